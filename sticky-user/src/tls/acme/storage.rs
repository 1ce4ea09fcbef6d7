//! The ACME directory (a volume shared by the sticky instances): the account, the certificates, the
//! pending challenge answers, and the lock file whose holder is the one instance that orders.
//!
//! ```text
//! DIR/lock                          flock()ed by the ordering instance; holds its name, for operators
//! DIR/account.json                  the ACME account (key and URL) and the directory it belongs to
//! DIR/certs/NAME.crt, NAME.key      issued chains and keys, NAME being the first name of the request
//! DIR/challenges/http-01/TOKEN      key authorization answered at /.well-known/acme-challenge/TOKEN
//! DIR/challenges/tls-alpn-01/NAME   key authorization whose digest the acme-tls/1 certificate carries
//! ```
//!
//! Files are written whole (a temporary file, then `rename`), so a reader never sees half a file;
//! keys and the account are mode 0600, the directories 0700. `certs/` follows the naming rule of
//! [`crate::tls::source`], so the reloader reads it as any certificate directory.

use std::{
    fs::{self, File, OpenOptions},
    io::{Read as _, Seek as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use crate::tls::{
    challenge::{self, Answer, Kind},
    source::Pair,
};

/// The largest file read back (account, challenge answers): they are well under a kilobyte.
const MAX_SMALL_FILE: u64 = 64 * 1024;

/// Why the ACME directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file or directory cannot be read, written, created or locked.
    #[error("ACME directory: failed to {action} {}", path.display())]
    Io {
        /// What was being done (`create`, `write`, `read`, `lock`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A name or token would not make a safe file name.
    #[error("ACME directory: {id:?} is not a valid {kind} file name")]
    Name {
        /// The name or token.
        id: String,
        /// What it names.
        kind: &'static str,
    },
}

/// The ACME directory of this instance.
#[derive(Clone, Debug)]
pub struct Storage {
    dir: PathBuf,
}

/// The lock that makes this instance the one that orders; dropping it (or the process ending, or
/// its host leaving the shared volume) lets another instance take over.
#[derive(Debug)]
pub struct Lease {
    _file: File,
}

impl Storage {
    /// Opens `dir`, creating it and its sub-directories if needed.
    ///
    /// # Errors
    /// A directory cannot be created.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let storage = Self { dir: dir.into() };
        for d in [
            storage.dir.clone(),
            storage.certs_dir(),
            storage.challenge_dir(Kind::Http01),
            storage.challenge_dir(Kind::TlsAlpn01),
        ] {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&d).map_err(|source| StorageError::Io {
                action: "create",
                path: d.clone(),
                source,
            })?;
        }
        Ok(storage)
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where issued certificates are: a certificate directory for the reloader.
    #[must_use]
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// The files of the certificate whose first name is `main`.
    #[must_use]
    pub fn pair(&self, main: &str) -> Pair {
        let certs = self.certs_dir();
        Pair { cert: certs.join(format!("{main}.crt")), key: certs.join(format!("{main}.key")) }
    }

    fn challenge_dir(&self, kind: Kind) -> PathBuf {
        self.dir.join("challenges").join(kind.as_str())
    }

    /// Takes the ordering lock if no other instance (or other handle in this process) holds it, and
    /// writes `holder` into it.
    ///
    /// # Errors
    /// The lock file cannot be opened or locked for another reason than being held.
    pub fn try_lead(&self, holder: &str) -> Result<Option<Lease>, StorageError> {
        let path = self.dir.join("lock");
        let io = |action, source| StorageError::Io { action, path: path.clone(), source };
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io("open", e))?;
        // flock, not fcntl: two handles in one process exclude each other too (and NFS maps it to
        // a lock the server keeps); called through the trait because std has a newer inherent one
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => return Ok(None),
            Err(fs4::TryLockError::Error(e)) => return Err(io("lock", e)),
        }
        file.set_len(0).map_err(|e| io("write", e))?;
        file.rewind().map_err(|e| io("write", e))?;
        file.write_all(format!("{holder}\n").as_bytes()).map_err(|e| io("write", e))?;
        Ok(Some(Lease { _file: file }))
    }

    /// Who holds (or last held) the ordering lock, as it wrote itself.
    #[must_use]
    pub fn leader(&self) -> Option<String> {
        read_small(&self.dir.join("lock")).ok().flatten().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
    }

    /// The stored account, if any.
    ///
    /// # Errors
    /// It exists but cannot be read.
    pub fn read_account(&self) -> Result<Option<String>, StorageError> {
        read_small(&self.dir.join("account.json"))
    }

    /// Stores the account.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn write_account(&self, json: &str) -> Result<(), StorageError> {
        write_atomic(&self.dir.join("account.json"), json.as_bytes(), 0o600)
    }

    /// Stores an issued chain and key under `main` (the key first: a reader pairs them only once
    /// both are there, and the reloader waits for files to settle).
    ///
    /// # Errors
    /// `main` is not a DNS name, or a file cannot be written.
    pub fn write_certificate(&self, main: &str, chain_pem: &str, key_pem: &str) -> Result<Pair, StorageError> {
        if !challenge::valid_name(main) {
            return Err(StorageError::Name { id: main.to_owned(), kind: "certificate" });
        }
        let pair = self.pair(main);
        write_atomic(&pair.key, key_pem.as_bytes(), 0o600)?;
        write_atomic(&pair.cert, chain_pem.as_bytes(), 0o644)?;
        Ok(pair)
    }

    /// Stores a challenge answer for every instance to serve.
    ///
    /// # Errors
    /// The id is not a safe file name, or the file cannot be written.
    pub fn write_challenge(&self, answer: &Answer) -> Result<(), StorageError> {
        let path = self.challenge_path(answer.kind, &answer.id)?;
        write_atomic(&path, answer.key_authorization.as_bytes(), 0o644)
    }

    /// Removes a challenge answer (a missing one is fine).
    ///
    /// # Errors
    /// The id is not a safe file name, or the file exists and cannot be removed.
    pub fn remove_challenge(&self, kind: Kind, id: &str) -> Result<(), StorageError> {
        let path = self.challenge_path(kind, id)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StorageError::Io { action: "remove", path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Every stored challenge answer (files with unsafe names are skipped: no instance wrote them).
    ///
    /// # Errors
    /// A challenge directory cannot be listed, or an answer cannot be read.
    pub fn read_challenges(&self) -> Result<Vec<Answer>, StorageError> {
        let mut answers = Vec::new();
        for kind in [Kind::Http01, Kind::TlsAlpn01] {
            let dir = self.challenge_dir(kind);
            let io = |source| StorageError::Io { action: "list", path: dir.clone(), source };
            for entry in fs::read_dir(&dir).map_err(io)? {
                let Ok(id) = entry.map_err(io)?.file_name().into_string() else { continue };
                let valid = match kind {
                    Kind::Http01 => challenge::valid_token(&id),
                    Kind::TlsAlpn01 => challenge::valid_name(&id),
                };
                if !valid {
                    continue;
                }
                // removed between listing and reading: that answer is over
                if let Some(key_authorization) = read_small(&dir.join(&id))? {
                    answers.push(Answer { kind, id, key_authorization: key_authorization.trim().to_owned() });
                }
            }
        }
        answers.sort();
        Ok(answers)
    }

    fn challenge_path(&self, kind: Kind, id: &str) -> Result<PathBuf, StorageError> {
        let valid = match kind {
            Kind::Http01 => challenge::valid_token(id),
            Kind::TlsAlpn01 => challenge::valid_name(id),
        };
        if !valid {
            return Err(StorageError::Name { id: id.to_owned(), kind: kind.as_str() });
        }
        Ok(self.challenge_dir(kind).join(id))
    }
}

/// A small file's text, `None` if it does not exist.
fn read_small(path: &Path) -> Result<Option<String>, StorageError> {
    let io = |source| StorageError::Io { action: "read", path: path.to_path_buf(), source };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut text = String::new();
    file.take(MAX_SMALL_FILE).read_to_string(&mut text).map_err(io)?;
    Ok(Some(text))
}

/// Writes `bytes` to `path` whole: a temporary file beside it (its name starts with `.`, so scans skip
/// it), synced, then renamed over `path`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StorageError> {
    let io = |source| StorageError::Io { action: "write", path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp").tempfile_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().set_permissions(fs::Permissions::from_mode(mode)).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests;

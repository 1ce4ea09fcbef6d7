use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{Existing, SocketError, probe, spawn};
use crate::admin::Admin;

/// A directory of its own per test, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sticky-admin-socket-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        Self(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("admin.sock")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn admin() -> Arc<Admin> {
    Arc::new(Admin {
        registry: prometheus_client::registry::Registry::default(),
        routing: None,
        access: crate::admin::access::Access::default(),
    })
}

/// One request over the socket, as `curl --unix-socket PATH http://sticky/PATH` sends it; the whole answer.
async fn get(socket: &Path, path: &str) -> String {
    let mut stream = tokio::net::UnixStream::connect(socket).await.expect("connect to the admin socket");
    let request = format!("GET {path} HTTP/1.1\r\nHost: sticky\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
}

fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).expect("the socket file").ino()
}

#[tokio::test(flavor = "current_thread")]
async fn serves_the_api_on_a_0600_socket_and_removes_it_on_exit() {
    let dir = Dir::new("serve");
    let path = dir.socket();
    let guard = spawn(&path, admin()).expect("serve");
    assert!(guard.serving());
    let mode = std::fs::metadata(&path).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only sticky's user may connect");
    let answer = get(&path, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"), "{answer}");
    drop(guard);
    assert!(!path.exists(), "the socket file goes with the instance that bound it");
}

#[tokio::test(flavor = "current_thread")]
async fn a_missing_directory_is_an_error_naming_it() {
    let dir = Dir::new("missing");
    let path = dir.0.join("not-there/admin.sock");
    let e = spawn(&path, admin()).expect_err("no directory");
    assert!(matches!(e, SocketError::NoDirectory { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("not-there") && text.contains("does not exist"), "{text}");
    let file = dir.0.join("file");
    std::fs::write(&file, "x").expect("a file");
    let e = spawn(&file.join("admin.sock"), admin()).expect_err("a file is no directory");
    assert!(matches!(e, SocketError::NotADirectory { .. }), "{e:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = Dir::new("file");
    let path = dir.socket();
    std::fs::write(&path, "keep me").expect("a file");
    let e = spawn(&path, admin()).expect_err("not a socket");
    assert!(matches!(e, SocketError::NotASocket { .. }), "{e:?}");
    assert_eq!(std::fs::read_to_string(&path).expect("still there"), "keep me");
}

#[tokio::test(flavor = "current_thread")]
async fn a_stale_socket_is_replaced() {
    let dir = Dir::new("stale");
    let path = dir.socket();
    // a killed task's socket: the file stays, nobody listens
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert_eq!(probe(&path).expect("probe"), Existing::Stale);
    let guard = spawn(&path, admin()).expect("serve");
    assert!(guard.serving());
    assert!(get(&path, "/healthz").await.ends_with("ok\n"));
}

#[tokio::test(flavor = "current_thread")]
async fn a_live_socket_is_never_taken_over_until_it_is_gone() {
    let dir = Dir::new("live");
    let path = dir.socket();
    let other = std::os::unix::net::UnixListener::bind(&path).expect("another instance's socket");
    let theirs = inode(&path);
    assert_eq!(probe(&path).expect("probe"), Existing::Live);
    let guard = spawn(&path, admin()).expect("starts anyway");
    assert!(!guard.serving(), "the live socket belongs to the other instance");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(inode(&path), theirs, "never replaced while it answers");
    // the other instance exits without removing its file (killed): the file is stale now
    drop(other);
    let mut waited = Duration::ZERO;
    while !guard.serving() && waited < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    assert!(guard.serving(), "taken over once the other one is gone");
    assert!(get(&path, "/healthz").await.ends_with("ok\n"));
}

#[tokio::test(flavor = "current_thread")]
async fn an_instance_does_not_remove_its_successors_socket() {
    let dir = Dir::new("successor");
    let path = dir.socket();
    let guard = spawn(&path, admin()).expect("serve");
    // a successor replaced the file (e.g. after this instance's listener was found stale)
    std::fs::remove_file(&path).expect("remove");
    let successor = std::os::unix::net::UnixListener::bind(&path).expect("successor binds");
    drop(guard);
    assert!(path.exists(), "the successor's socket stays");
    drop(successor);
}

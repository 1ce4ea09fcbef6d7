//! The run's work directory: the generated configs, every process's log, the cookie key.

use std::path::PathBuf;

/// Files the balancers read and write: configs, logs, the cookie key.
#[derive(Debug)]
pub struct Workdir {
    /// The directory (inside the output directory).
    pub dir: PathBuf,
}

impl Workdir {
    /// Path of a file in it.
    #[must_use]
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

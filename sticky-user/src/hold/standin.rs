//! sticky standing in for a holder that is gone: while nothing answers at the holder's path, the
//! sticky that took sockets from it hands out copies of them there itself, until a holder takes the
//! path back. Without it, a holder that crashed could not start again (sticky's copies keep the
//! ports bound, so it cannot bind them, and there is no holder to take them from), and the next
//! update of sticky would find no sockets.

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::server::{Endpoint, Held, serve};

/// The sockets a sticky took from the holder (copies, by address): what it hands out while no
/// holder answers.
pub type Taken = Arc<Mutex<Vec<(SocketAddr, TcpListener)>>>;

/// How often the holder's path is probed.
const PROBE: Duration = Duration::from_secs(2);

/// Probes `path` every [`PROBE`]; while nothing answers, serves copies of `taken` there (one log
/// line each way). Runs until the runtime ends.
pub async fn run(path: PathBuf, taken: Taken) {
    loop {
        tokio::time::sleep(PROBE).await;
        if tokio::net::UnixStream::connect(&path).await.is_ok() {
            continue;
        }
        let copies: Vec<_> = crate::lock::lock(&taken)
            .iter()
            .filter_map(|(addr, listener)| listener.try_clone().ok().map(|l| (*addr, l)))
            .collect();
        if copies.is_empty() {
            continue;
        }
        let addrs: Vec<_> = copies.iter().map(|(a, _)| *a).collect();
        let (endpoint, listener) = match Endpoint::bind(&path) {
            Ok(bound) => bound,
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::chain(&e), "listener holder gone, and its path cannot be served");
                continue;
            }
        };
        tracing::warn!(
            holder = %path.display(), sockets = ?addrs,
            "the listener holder is gone: this sticky hands out its listening sockets at its path until a holder takes them back"
        );
        let held = Arc::new(Held::of(copies));
        tokio::select! {
            served = serve(listener, held) => {
                if let Err(e) = served {
                    tracing::warn!(error = %e, "standing in for the listener holder failed");
                }
            }
            () = async {
                while endpoint.ours() {
                    tokio::time::sleep(PROBE).await;
                }
            } => tracing::info!(holder = %path.display(), "a listener holder took its path back"),
        }
    }
}

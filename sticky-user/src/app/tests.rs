//! `sticky run --admin-socket` in both modes: the one admin API over the unix socket.

use std::path::{Path, PathBuf};

use clap::Parser as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{AppError, start};
use crate::{admin::socket::SocketError, cli::Cli, config, cookie::Keys, tcp::tests::named_backend};

fn run_args(list: &[&str]) -> crate::cli::RunArgs {
    let mut argv = vec!["sticky", "run"];
    argv.extend_from_slice(list);
    match Cli::try_parse_from(argv).expect("arguments must parse").command {
        crate::cli::Command::Run(run) => *run,
        _ => unreachable!("sticky run"),
    }
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sticky-app-admin-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        Self(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One request over the unix socket, as curl --unix-socket sends it; (status, body).
async fn request(socket: &Path, method: &str, path: &str, json: bool) -> (u16, String) {
    let mut stream = tokio::net::UnixStream::connect(socket).await.expect("connect to the admin socket");
    let content_type = if json { "Content-Type: application/json\r\nContent-Length: 0\r\n" } else { "" };
    let head = format!("{method} {path} HTTP/1.1\r\nHost: sticky\r\n{content_type}Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

#[tokio::test(flavor = "current_thread")]
async fn http_mode_serves_the_api_on_the_socket() {
    let dir = Dir::new("http");
    let socket = dir.0.join("admin.sock");
    let args = run_args(&[
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--backend",
        "b1=http://127.0.0.1:9",
        "--admin-socket",
        socket.to_str().expect("utf-8"),
    ]);
    let running = start(config::build(&args, None).expect("valid"), Some(Keys::random())).await.expect("starts");
    assert!(running.admin.is_none(), "no TCP admin listener without --admin");
    let (status, body) = request(&socket, "GET", "/api/backends", false).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"id\": \"b1\"") && body.contains("\"state\": \"active\""), "{body}");
    let (status, body) = request(&socket, "POST", "/api/services/default/backends/b1/drain", false).await;
    assert_eq!(status, 415, "writes still need JSON: {body}");
    let (status, body) = request(&socket, "POST", "/api/services/default/backends/b1/drain", true).await;
    assert_eq!((status, body.as_str()), (200, "b1 of default: draining\n"));
    assert!(request(&socket, "GET", "/api/backends", false).await.1.contains("\"state\": \"draining\""));
    running.shutdown().await;
    drop(running);
    assert!(!socket.exists(), "removed on exit");
}

/// One connection through tcp mode: the name of the backend that answered.
async fn through(listen: &str) -> String {
    let connect = async {
        let mut s = tokio::net::TcpStream::connect(listen).await.expect("tcp mode must accept");
        let mut name = String::new();
        s.read_to_string(&mut name).await.expect("read the backend's name");
        name
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), connect).await.expect("a backend must answer")
}

#[tokio::test(flavor = "current_thread")]
async fn tcp_mode_shows_its_backends_and_drains_them_on_the_socket() {
    let dir = Dir::new("tcp");
    let socket = dir.0.join("admin.sock");
    let listen = format!("127.0.0.1:{}", testkit::net::free_port());
    let (one, two) = (named_backend("one").await, named_backend("two").await);
    let (one_arg, two_arg) = (one.to_string(), two.to_string());
    let args = run_args(&[
        "--mode",
        "tcp",
        "--no-ebpf",
        "--listen",
        &listen,
        "--backend",
        &one_arg,
        "--backend",
        &two_arg,
        "--admin-socket",
        socket.to_str().expect("utf-8"),
    ]);
    let running = start(config::build(&args, None).expect("valid"), None).await.expect("starts");
    // one client address: affinity keeps every connection on one backend
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(through(&listen).await);
    }
    let first = seen[0].clone();
    assert!(seen.iter().all(|n| *n == first), "one client, one backend: {seen:?}");
    let (pinned, other) =
        if first == "one" { (one_arg.clone(), two_arg.clone()) } else { (two_arg.clone(), one_arg.clone()) };
    let (status, body) = request(&socket, "GET", "/api/backends", false).await;
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let rows = doc["tcp_backends"].as_array().expect("tcp_backends listed");
    assert_eq!(rows.len(), 2, "{body}");
    let row = |addr: &str| rows.iter().find(|r| r["id"] == addr).cloned().expect("each backend is listed by id");
    assert_eq!(row(&pinned)["connections"], 6, "{body}");
    assert_eq!(row(&other)["connections"], 0, "{body}");
    assert_eq!(row(&pinned)["path"], "user space");
    let (status, metrics) = request(&socket, "GET", "/metrics", false).await;
    assert_eq!(status, 200);
    let sample = |name: &str| testkit::prometheus::sample(&metrics, name);
    assert_eq!(
        sample(&format!(r#"sticky_l4_backend_connections_total{{service="default",backend="{pinned}"}}"#)),
        Some(6),
        "{metrics}"
    );
    assert_eq!(
        sample(&format!(r#"sticky_l4_backend_draining{{service="default",backend="{pinned}"}}"#)),
        Some(0),
        "{metrics}"
    );

    let drain = format!("/api/services/default/backends/{pinned}/drain");
    let (status, body) = request(&socket, "POST", &drain, true).await;
    assert_eq!((status, body.as_str()), (200, format!("{pinned} of default: draining\n").as_str()));
    // the drain reaches tcp mode on its control task: the first connection to the other backend
    // comes within a few tries, and from then on every one goes there (affinity to a drained
    // backend is not used)
    let moved = {
        let mut moved = None;
        for i in 0..50 {
            if through(&listen).await != first {
                moved = Some(i);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        moved.expect("a drained backend takes no new connections")
    };
    for _ in 0..5 {
        assert_ne!(through(&listen).await, first, "moved after {moved} tries; stays moved while drained");
    }
    let (_, metrics) = request(&socket, "GET", "/metrics", false).await;
    let drained = format!(r#"sticky_l4_backend_draining{{service="default",backend="{pinned}"}}"#);
    assert_eq!(testkit::prometheus::sample(&metrics, &drained), Some(1), "{metrics}");
    let (status, body) = request(&socket, "POST", "/api/services/default/backends/nope/drain", true).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no backend nope"), "{body}");
    let activate = format!("/api/services/default/backends/{pinned}/activate");
    assert_eq!(request(&socket, "POST", &activate, true).await.0, 200);
    assert_eq!(request(&socket, "GET", "/healthz", false).await, (200, "ok\n".to_owned()));
    drop(running);
}

#[tokio::test(flavor = "current_thread")]
async fn a_missing_socket_directory_stops_sticky_run_naming_it() {
    let dir = Dir::new("missing");
    let socket = dir.0.join("run-sticky/admin.sock");
    let args = run_args(&[
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--backend",
        "b1=http://127.0.0.1:9",
        "--admin-socket",
        socket.to_str().expect("utf-8"),
    ]);
    let e = start(config::build(&args, None).expect("valid"), None).await.expect_err("no directory");
    assert!(matches!(e, AppError::AdminSocket(SocketError::NoDirectory { .. })), "{e:?}");
    let text = crate::telemetry::chain(&e);
    assert!(text.contains("run-sticky") && text.contains("does not exist"), "{text}");
}

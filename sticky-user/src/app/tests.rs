//! `sticky run --admin-socket` in both modes: the one admin API over the unix socket.

use std::path::{Path, PathBuf};

use clap::Parser as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{AppError, start};
use crate::{admin::socket::SocketError, cli::Cli, config, cookie::Keys};

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

#[tokio::test(flavor = "current_thread")]
async fn tcp_mode_serves_metrics_on_the_socket() {
    let dir = Dir::new("tcp");
    let socket = dir.0.join("admin.sock");
    let listen = format!("127.0.0.1:{}", testkit::net::free_port());
    let args = run_args(&[
        "--mode",
        "tcp",
        "--no-ebpf",
        "--listen",
        &listen,
        "--backend",
        "127.0.0.1:9",
        "--admin-socket",
        socket.to_str().expect("utf-8"),
    ]);
    let running = start(config::build(&args, None).expect("valid"), None).await.expect("starts");
    let (status, body) = request(&socket, "GET", "/metrics", false).await;
    assert_eq!(status, 200);
    assert!(body.contains("sticky_l4_fallback_connections_total"), "{body}");
    let (status, body) = request(&socket, "GET", "/api/backends", false).await;
    assert_eq!(status, 404);
    assert!(body.contains("tcp mode"), "{body}");
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

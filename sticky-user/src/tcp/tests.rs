//! tcp mode with Swarm's services, on loopback: what the admin API and `/metrics` read of them.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use clap::Parser as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::model::TcpMember;

/// `sticky run --docker --no-ebpf`'s tcp settings.
fn docker_no_ebpf() -> TcpConfig {
    let line = ["sticky", "run", "--docker", "--listen", "127.0.0.1:0", "--no-ebpf"];
    let crate::cli::Command::Run(args) = crate::cli::Cli::try_parse_from(line).expect("arguments parse").command else {
        unreachable!("sticky run")
    };
    crate::config::build(&args, None).expect("valid").tcp.expect("--docker serves tcp services too")
}

/// A backend on loopback that answers every connection with `name` and closes (tcp mode's tests here and
/// in `app`).
pub(crate) async fn named_backend(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a backend");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(name.as_bytes()).await;
            });
        }
    });
    addr
}

async fn through(port: u16) -> String {
    let connect = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("the service must accept");
        let mut name = String::new();
        s.read_to_string(&mut name).await.expect("read the backend's name");
        name
    };
    tokio::time::timeout(Duration::from_secs(5), connect).await.expect("a backend must answer")
}

/// A Swarm service labelled `sticky.tcp.path=kernel` when eBPF is off: relayed in user space on a
/// socket bound here (in sticky's container, where its published port arrives), and its backends
/// are listed with their task ids, connections and bytes.
#[tokio::test(flavor = "current_thread")]
async fn a_kernel_path_service_without_ebpf_is_relayed_here_and_listed() {
    let config = docker_no_ebpf();
    let backend = named_backend("db-1").await;
    let port = testkit::net::free_listen_port();
    let mut svc = TcpService::at(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), vec![backend], Duration::ZERO);
    svc.name = "db".into();
    svc.path = TcpPath::Kernel;
    svc.members = vec![
        TcpMember { id: "task-a".into(), addr: backend, draining: false },
        TcpMember { id: "task-b".into(), addr: "127.0.0.1:9".parse().unwrap(), draining: true },
    ];
    let mode = TcpMode::start(&config, &[svc], crate::listen::Source::Bind).await.expect("starts");
    let metrics = mode.metrics();
    assert!(metrics.attached().is_none(), "no kernel path with --no-ebpf");
    for _ in 0..3 {
        assert_eq!(through(port).await, "db-1");
    }
    // the relays end after the client's side closes: wait for them, bounded
    for _ in 0..100 {
        if metrics.relayed() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rows = metrics.snapshot().backends;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let a = &rows[0];
    assert_eq!((a.id.as_str(), a.state, a.path), ("task-a", "active", "user space"), "{rows:?}");
    assert_eq!((a.connections, a.active, a.bytes_to_client, a.bytes_to_backend), (Some(3), 0, Some(12), Some(0)));
    assert_eq!((rows[1].id.as_str(), rows[1].state), ("task-b", "draining"), "Swarm's draining task is listed");
    drop(mode);
}

#[test]
fn kernel_affinity_mirrors_the_kernels_freshness_and_set_checks() {
    let b: SocketAddr = "10.0.1.2:80".parse().expect("an address");
    let other: SocketAddr = "10.0.1.3:80".parse().expect("an address");
    let set = [b, other];
    let entry = sticky_common::AffinityValue { backend: 3, pad: 0, last_used_ns: 1_000 };
    let s = 1_000_000_000;
    // fresh: the backend and the entry's age
    assert_eq!(kernel_affinity(&entry, 1_000 + 42 * s, 60 * s, Some(b), &set), Some((b, Duration::from_secs(42))));
    // as old as the timeout: stale, as `now - last_used < timeout` in the kernel
    assert_eq!(kernel_affinity(&entry, 1_000 + 60 * s, 60 * s, Some(b), &set), None);
    // written after the clock was read (wraps): not fresh, as in the kernel
    assert_eq!(kernel_affinity(&entry, 999, 60 * s, Some(b), &set), None);
    // affinity off, an id no longer known, or a backend out of the set
    assert_eq!(kernel_affinity(&entry, 2_000, 0, Some(b), &set), None);
    assert_eq!(kernel_affinity(&entry, 2_000, 60 * s, None, &set), None);
    assert_eq!(kernel_affinity(&entry, 2_000, 60 * s, Some(b), &[other]), None);
}

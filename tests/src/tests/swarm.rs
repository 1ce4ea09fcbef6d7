//! Swarm tests: a private dockerd + `docker swarm init` per test, images built from the static
//! `sticky` binary, traffic only to 127.0.0.1 (published ports) and to containers of this Swarm.

use std::time::Duration;

use crate::{
    process::wait_until,
    require_root, sticky_bin,
    swarm::{Swarm, docker_available, is_static},
};

/// Returns from the test, loudly, when Docker or a static `sticky` binary is missing.
macro_rules! require_swarm {
    () => {
        require_root!();
        if !docker_available() {
            crate::skip::skip(
                &format!("{}::{}", module_path!(), line!()),
                "needs docker.io (cargo xtask setup installs it)",
            );
            return;
        }
        if !is_static(&sticky_bin()) {
            crate::skip::skip(
                &format!("{}::{}", module_path!(), line!()),
                "needs a static sticky binary for FROM scratch images (cargo xtask test builds one)",
            );
            return;
        }
    };
}

/// One HTTP/1.1 GET with `Connection: close` to 127.0.0.1:`port`; the body, if the status is 200.
fn get_local(port: u16) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

#[test]
fn private_swarm_runs_a_service_from_the_static_binary() {
    require_swarm!();
    let swarm = Swarm::start();
    swarm.build_image("sticky:test", &sticky_bin());
    // Swarm gives a task docker_gwbridge (which host-mode publishing needs) only with an overlay:
    // the daemon runs without the default bridge.
    swarm.docker(&["network", "create", "-d", "overlay", "hellonet"]);
    swarm.docker(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        "hello",
        "--network",
        "hellonet",
        "--init",
        "--stop-grace-period",
        "1s",
        "--publish",
        "mode=host,target=8000,published=18321",
        "sticky:test",
        "whoami",
        "--listen",
        "0.0.0.0:8000",
        "--name",
        "hello-task",
    ]);
    swarm.wait_running("hello", 1, Duration::from_secs(30));
    let served = wait_until(Duration::from_secs(10), || get_local(18321).as_deref() == Some("I'm hello-task\n"));
    assert!(served, "the published port must reach the task and its body must name it:\n{}", swarm.log_tail());
}

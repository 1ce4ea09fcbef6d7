//! `cargo xtask demo --kernel`: the eBPF classifier on a two-namespace topology, in one minute.
//!
//! A client namespace and a server namespace joined by a veth pair (documentation addresses, no
//! default route); `sticky whoami` serves in the server namespace, `sticky inspect` attaches the tc
//! classifier to the server's interface, the client sends a few requests, the counters are printed.
//! Everything is removed at the end, also on failure.

use std::{
    io::BufRead as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

struct Namespaces(Vec<String>, Vec<Child>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for child in &mut self.1 {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("failed to run ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

pub fn run_kernel(sticky: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(xtask::setup::is_root(), "the kernel demo needs root (network namespaces, BPF)");
    let (cli, srv) = (format!("stkdemo{}c", std::process::id()), format!("stkdemo{}s", std::process::id()));
    let mut guard = Namespaces(Vec::new(), Vec::new());
    for ns in [&cli, &srv] {
        ip(&["netns", "add", ns])?;
        guard.0.push(ns.clone());
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    ip(&["-n", &cli, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &srv])?;
    ip(&["-n", &cli, "addr", "add", "192.0.2.2/24", "dev", "eth0"])?;
    ip(&["-n", &srv, "addr", "add", "192.0.2.10/24", "dev", "eth0"])?;
    ip(&["-n", &cli, "link", "set", "eth0", "up"])?;
    ip(&["-n", &srv, "link", "set", "eth0", "up"])?;

    let spawn = |ns: &str, args: &[&str], out: Stdio| -> anyhow::Result<Child> {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(sticky)
            .args(args)
            .stdout(out)
            .spawn()
            .context("failed to start sticky")
    };
    guard.1.push(spawn(&srv, &["whoami", "--listen", "192.0.2.10:8000", "--name", "demo-backend"], Stdio::null())?);
    println!("server namespace {srv}: sticky whoami on 192.0.2.10:8000; attaching sticky_tc to its eth0 ...");
    let mut inspect = spawn(&srv, &["inspect", "--iface", "eth0", "--interval", "1", "--count", "4"], Stdio::piped())?;
    let mut lines = std::io::BufReader::new(inspect.stdout.take().context("inspect stdout")?).lines();
    guard.1.push(inspect);
    // The first line says the program is attached: only then does traffic start, so it is all counted.
    let first = lines.next().context("sticky inspect exited before attaching")??;
    println!("sticky inspect: {first}");
    let printer = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            println!("sticky inspect: {line}");
        }
    });

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut served = 0;
    while served < 5 && Instant::now() < deadline {
        let out = Command::new("ip")
            .args(["netns", "exec", &cli, "curl", "-s", "--max-time", "1", "http://192.0.2.10:8000/"])
            .output()
            .context("failed to run curl")?;
        let body = String::from_utf8_lossy(&out.stdout);
        if body == "I'm demo-backend\n" {
            served += 1;
            print!("client namespace {cli}: curl http://192.0.2.10:8000/ -> {body}");
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    anyhow::ensure!(served == 5, "the demo backend did not answer");
    // sticky inspect prints its counters once a second, four times, then exits.
    let inspect = guard.1.last_mut().context("inspect process")?;
    let status = inspect.wait().context("failed to wait for sticky inspect")?;
    anyhow::ensure!(status.success(), "sticky inspect failed ({status})");
    let _ = printer.join();
    println!("(the counters: every frame the server received, by verdict; tcp_v4 = TCP segments the L4 path handles)");
    Ok(())
}

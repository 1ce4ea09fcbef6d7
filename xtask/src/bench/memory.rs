//! sticky's memory with many live sessions (http) and flows (tcp, kernel path): RSS of the process,
//! plus the kernel memory of its BPF maps, each level on a fresh process.
//!
//! - http: sticky keeps nothing per session (the session is the signed cookie the client holds). A
//!   *live session* is a cookie issued by this process and sent back (a pinned request). Level S:
//!   S sessions created and replayed over 8 keep-alive connections, then [`held`] (at most S) more
//!   client connections each replaying one session and left open idle: RSS is read while they are open.
//!   (an idle client connection holds one descriptor in sticky, its upstream connection having gone
//!   back to the worker's bounded pool, and two in the probe, whose client clones its socket; the
//!   open-file hard limit bounds how many the bench can hold.)
//! - tcp kernel: a *live flow* is an established connection through the VIP, i.e. a pair of `CONNS`
//!   entries (checked from sticky's own `/metrics`). Level F: F connections from 64 client addresses
//!   (so client-IP affinity spreads them over 8 backends), each after one GET, all open while RSS and
//!   the maps' kernel memory (fdinfo `memlock`, preallocated for `--max-flows`) are read. The
//!   connections are spread over several probe processes and backend workers, each below the
//!   open-file limit.

use std::{
    io::{BufRead as _, BufReader},
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
    process::Stdio,
};

use anyhow::{Context as _, ensure};
use serde::{Deserialize, Serialize};
use testkit::{ChildGuard, wait};

use super::{
    configs::{self, Balancer, Config, Load, Workdir},
    measure,
    probe::{Held, Spec},
    topology::{
        self, CLIENT_EXTRA, LB_CPU, LB_IFACES, LOAD_CPU, Topology, VIP, VIP_PORT, adopt, backend_addr, pinned, spawn,
    },
};

/// Idle client connections held open at the http levels: 10k, or what the open-file limit allows
/// (the probe holds two descriptors per connection: the test kit's client clones its socket).
#[must_use]
pub fn held() -> u32 {
    u32::try_from((topology::fd_limit().saturating_sub(2000) / 2).min(10_000)).unwrap_or(10_000)
}

/// Backends of the flow levels, `b11`..`b18` (client-IP affinity puts every flow of one address on one
/// backend; 8 backends keep each backend's share of the SNAT ports low).
pub const FLOW_BACKENDS: std::ops::RangeInclusive<u16> = 11..=18;
const ADMIN: &str = "127.0.0.1:9100";

/// One measured level.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Level {
    /// `sticky-http` or `sticky-tcp-kernel`.
    pub mode: String,
    /// Live sessions or flows.
    pub live: u64,
    /// Client connections open while measuring.
    pub open_connections: u64,
    /// RSS right after start (one request served), KiB.
    pub rss_start_kib: u64,
    /// http: RSS once every session was created and replayed, before the idle connections, KiB.
    pub rss_sessions_kib: Option<u64>,
    /// RSS with `live` sessions/flows (and the open connections), KiB.
    pub rss_kib: u64,
    /// Kernel memory of the process's BPF maps (fdinfo memlock), KiB; 0 in http mode.
    pub bpf_maps_kib: u64,
    /// Flow-table entries sticky reports (`CONNS`, two per flow); http: none.
    pub conns_entries: Option<u64>,
    /// What the probe checked (sessions replayed on their backend, flows of one client on one backend).
    pub check: String,
}

/// Which memory measurements run.
#[derive(Clone, Copy, Debug)]
pub struct Modes {
    /// http sessions (`memory-http`).
    pub http: bool,
    /// tcp kernel flows (`memory-tcp`).
    pub tcp: bool,
}

/// Measures every level of `levels` for http sessions and tcp kernel flows.
///
/// # Errors
/// A probe or a process fails, or a session/flow was not pinned.
pub fn run(
    topo: &Topology,
    work: &Workdir,
    sticky: &Path,
    exe: &Path,
    levels: &[u32],
    modes: Modes,
) -> anyhow::Result<Vec<Level>> {
    let mut out = Vec::new();
    for &live in levels.iter().filter(|_| modes.http) {
        super::check_interrupted()?;
        out.push(http_level(topo, work, sticky, exe, live)?);
        eprintln!("bench: memory: {}", describe(out.last().expect("just pushed")));
    }
    for &live in levels.iter().filter(|_| modes.tcp) {
        super::check_interrupted()?;
        out.push(tcp_level(topo, work, sticky, exe, live)?);
        eprintln!("bench: memory: {}", describe(out.last().expect("just pushed")));
    }
    Ok(out)
}

fn describe(l: &Level) -> String {
    format!(
        "{} with {} live: RSS {} KiB (start {} KiB, sessions alone {:?} KiB), BPF maps {} KiB, {}",
        l.mode, l.live, l.rss_kib, l.rss_start_kib, l.rss_sessions_kib, l.bpf_maps_kib, l.check
    )
}

fn http_level(topo: &Topology, work: &Workdir, sticky: &Path, exe: &Path, sessions: u32) -> anyhow::Result<Level> {
    let config = Config {
        id: "memory-http",
        title: "memory, http",
        balancer: Balancer::StickyHttp { splice: false },
        load: Load::Plain,
        tls: None,
        ipv6: false,
        peer: None,
        goals: &[],
    };
    let running = configs::start(&config, topo, work, sticky)?;
    let pid = running.procs.first().context("sticky process")?.id();
    let rss_start_kib = measure::rss_kib(pid).context("sticky's RSS")?;
    let held_conns = sessions.min(held());
    let spec = Spec::Sessions {
        target: SocketAddrV4::new(VIP, VIP_PORT).into(),
        cookie_name: configs::STICKY_COOKIE.to_owned(),
        sessions,
        threads: 8,
        hold: held_conns,
    };
    // The probe reports twice: sessions done (over 8 connections), then the idle connections open.
    let mut probe = spawn_probe(topo, exe, &spec)?;
    let stdout = probe.child_mut().stdout.take().context("probe stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let sessions_done: Held = read_report(lines.next())?;
    let rss_sessions_kib = measure::rss_kib(pid).context("sticky's RSS")?;
    {
        use std::io::Write as _;
        let stdin = probe.child_mut().stdin.as_mut().context("probe stdin")?;
        stdin.write_all(b"go\n")?;
        stdin.flush()?;
    }
    let held: Held = read_report(lines.next())?;
    let rss_kib = measure::rss_kib(pid).context("sticky's RSS")?;
    drop(probe);
    ensure!(sessions_done.created == u64::from(sessions), "http sessions: {sessions_done:?}");
    ensure!(
        held.bad == 0 && held.unpinned == 0,
        "http sessions: {} bad responses, {} unpinned",
        held.bad,
        held.unpinned
    );
    ensure!(held.created == u64::from(sessions) && held.open >= u64::from(held_conns), "http sessions: {held:?}");
    drop(running);
    Ok(Level {
        mode: "sticky-http".into(),
        live: held.created,
        open_connections: held.open,
        rss_start_kib,
        rss_sessions_kib: Some(rss_sessions_kib),
        rss_kib,
        bpf_maps_kib: 0,
        conns_entries: None,
        check: format!(
            "every session replayed on its own backend ({:?}); {} idle connections open",
            held.backends, held.open
        ),
    })
}

fn tcp_level(topo: &Topology, work: &Workdir, sticky: &Path, exe: &Path, flows: u32) -> anyhow::Result<Level> {
    // Per process, stay well below the open-file limit: the probes hold two descriptors per flow (the
    // test kit's client clones its socket), the backend workers one per connection (reuseport spreads
    // them evenly).
    let per_process =
        u32::try_from((topology::fd_limit().saturating_sub(2000) / 2).max(1000)).unwrap_or(u32::MAX).min(15_000);
    let probes = flows.div_ceil(per_process).max(1);
    let _backends =
        configs::start_backends(topo, work, &format!("memory-backends-{flows}"), FLOW_BACKENDS, probes + 1)?;
    let log = work.file(&format!("memory-tcp-{flows}.log"));
    let mut cmd = pinned(&topo.lb, LB_CPU, sticky);
    cmd.args(["run", "--mode", "tcp", "--listen", &SocketAddrV4::new(VIP, VIP_PORT).to_string(), "--admin", ADMIN]);
    // Room for every flow: 2 x 131072 CONNS entries, and SNAT ports outside nothing else's use here.
    cmd.args(["--max-flows", "131072", "--snat-ports", "1024-65535"]);
    for n in FLOW_BACKENDS {
        cmd.args(["--backend", &backend_addr(n).to_string()]);
    }
    for iface in LB_IFACES {
        cmd.args(["--iface", iface]);
    }
    let mut sticky_proc = spawn("sticky tcp (memory)", &mut cmd, &log)?;
    wait_admin(topo, &mut sticky_proc, &log)?;
    configs::wait_kernel_path(&log)?;
    let pid = sticky_proc.id();
    let rss_start_kib = measure::rss_kib(pid).context("sticky's RSS")?;
    // Each probe gets its own client addresses, so it can check their affinity alone.
    let sources: Vec<Ipv4Addr> = CLIENT_EXTRA.map(|h| Ipv4Addr::new(198, 18, 1, h)).collect();
    let specs: Vec<Spec> = (0..probes)
        .map(|p| Spec::Flows {
            target: SocketAddrV4::new(VIP, VIP_PORT).into(),
            sources: sources.iter().copied().skip(p as usize).step_by(probes as usize).collect(),
            flows: flows / probes + u32::from(p < flows % probes),
            threads: 8,
        })
        .collect();
    let (held, mut probe_procs) = hold(topo, exe, &specs)?;
    let rss_kib = measure::rss_kib(pid).context("sticky's RSS")?;
    let (bpf_maps_kib, _) = measure::bpf_map_kib(pid);
    let metrics = topo.lb.command("curl").args(["-s", "-m", "10", &format!("http://{ADMIN}/metrics")]).output()?;
    let conns_entries =
        testkit::prometheus::sample(&String::from_utf8_lossy(&metrics.stdout), r#"sticky_l4_map_entries{map="CONNS"}"#);
    probe_procs.clear();
    ensure!(held.bad == 0 && held.unpinned == 0, "tcp flows: {} bad responses, {} unpinned", held.bad, held.unpinned);
    ensure!(held.open == u64::from(flows), "tcp flows: {held:?}");
    Ok(Level {
        mode: "sticky-tcp-kernel".into(),
        live: held.created,
        open_connections: held.open,
        rss_start_kib,
        rss_sessions_kib: None,
        rss_kib,
        bpf_maps_kib,
        conns_entries,
        check: format!(
            "each client address's flows on one backend ({} backends used); {} connects retried from a new \
             client port after 1.5 s without SYN-ACK",
            held.backends.len(),
            held.connect_retries
        ),
    })
}

/// Starts a memory probe in the client namespace, with pipes to its stdin and stdout.
pub(super) fn spawn_probe(topo: &Topology, exe: &Path, spec: &Spec) -> anyhow::Result<ChildGuard> {
    let json = serde_json::to_string(spec)?;
    let mut cmd = pinned(&topo.cli, LOAD_CPU, exe);
    cmd.args(["bench-probe", &json]).stdin(Stdio::piped()).stdout(Stdio::piped());
    let child = cmd.spawn().context("failed to start a memory probe")?;
    Ok(adopt("memory probe", child))
}

/// A probe's report line.
pub(super) fn read_report(line: Option<std::io::Result<String>>) -> anyhow::Result<Held> {
    let line = line.context("a memory probe failed (see its error above)")??;
    serde_json::from_str(line.trim()).with_context(|| format!("bad probe report {line:?}"))
}

/// Starts one memory probe per spec and returns once all of them hold everything open (their
/// reports, summed), with the probes, which close their connections when dropped.
fn hold(topo: &Topology, exe: &Path, specs: &[Spec]) -> anyhow::Result<(Held, Vec<ChildGuard>)> {
    let mut procs = specs.iter().map(|spec| spawn_probe(topo, exe, spec)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut total = Held::default();
    for probe in &mut procs {
        let stdout = probe.child_mut().stdout.take().context("probe stdout")?;
        let held = read_report(BufReader::new(stdout).lines().next())?;
        total.created += held.created;
        total.open += held.open;
        total.bad += held.bad;
        total.unpinned += held.unpinned;
        total.connect_retries += held.connect_retries;
        for (b, n) in held.backends {
            *total.backends.entry(b).or_default() += n;
        }
    }
    Ok((total, procs))
}

fn wait_admin(topo: &Topology, proc: &mut ChildGuard, log: &Path) -> anyhow::Result<()> {
    let poll = std::time::Duration::from_millis(100);
    let up = wait::try_until(std::time::Duration::from_secs(10), poll, || -> anyhow::Result<bool> {
        super::check_interrupted()?;
        proc.check_alive().with_context(|| configs::tail(log))?;
        let out = topo
            .lb
            .command("curl")
            .args(["-s", "-o", "/dev/null", "-m", "1", "-w", "%{http_code}"])
            .arg(format!("http://{ADMIN}/metrics"))
            .output()?;
        Ok(out.stdout == b"200")
    })?;
    anyhow::ensure!(up, "sticky tcp's admin listener did not answer within 10 s: {}", configs::tail(log));
    Ok(())
}

//! Memory per idle keep-alive client connection, for every http balancer of the run (issue 12): a
//! fresh balancer, checked as its row is, then client connections that each make one request (pinned
//! rows send the checked cookie) and sit idle, in two phases: `connections / 10`, then `connections`
//! more. The figure is the growth of the RSS summed over every process in the balancer namespace
//! (nginx's master and worker, HAProxy, sticky) between the two phases, divided by the second phase's
//! connections. The first phase is the baseline because allocators return pages freed earlier only
//! when they allocate again (mimalloc purges lazily): measured from a cold start, sticky's RSS fell
//! while it took 200 connections; sticky also runs it with mimalloc's purge delay at 0
//! ([`ALLOCATOR_ENV`]). RSS only: the kernel's socket buffers are not in it, for any
//! balancer.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, ensure};
use serde::{Deserialize, Serialize};

use super::{
    configs::{self, Balancer, Config, Load, Workdir},
    measure,
    memory::{read_report, spawn_probe},
    probe::Spec,
    topology::Topology,
    verify,
};

/// Idle connections held for the figure (the method: 2000); a smoke run holds fewer.
pub const CONNECTIONS: u32 = 2000;
/// Idle connections of a `--quick` run (checks that it works; the figure means little).
pub const CONNECTIONS_QUICK: u32 = 200;

/// sticky's allocator (mimalloc) returns freed pages only after a delay and only when it next allocates
/// or frees, so RSS read after a burst still counts pages that are free: in a full run sticky's growth
/// over 2000 connections read as -4.4 KiB each (pages of the check's requests handed back while the
/// connections were opened). With the delay at 0, RSS is the memory in use, which is what the figure
/// means. HAProxy and nginx use glibc's malloc, whose growth here was the same in every run.
const ALLOCATOR_ENV: [(&str, &str); 1] = [("MIMALLOC_PURGE_DELAY", "0")];

/// One balancer's idle-connection memory.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Idle {
    /// Connections of the second phase (the figure's divisor).
    pub connections: u64,
    /// RSS of the balancer's processes with the first phase's connections open, KiB.
    pub rss_before_kib: u64,
    /// RSS of the balancer's processes with the connections open, KiB.
    pub rss_after_kib: u64,
    /// `(rss_after - rss_before) / connections`, KiB.
    pub kib_per_connection: f64,
    /// What the probe saw.
    pub check: String,
}

/// RSS of every process in the balancer namespace, KiB, once it holds still: allocators return freed
/// pages some time after a burst (mimalloc purges on a delay), so two readings 250 ms apart must agree
/// within 64 KiB (at most 5 s, then the last reading).
fn settled_rss(topo: &Topology) -> anyhow::Result<u64> {
    let read = || -> anyhow::Result<u64> {
        let pids = topo.lb.pids();
        ensure!(!pids.is_empty(), "no balancer process in the balancer namespace");
        Ok(pids.iter().filter_map(|p| measure::rss_kib(*p)).sum())
    };
    let mut last = read()?;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        let now = read()?;
        if now.abs_diff(last) <= 64 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// Whether `config` gets an idle-connection figure: the user-space plain-http balancers (splice aside:
/// its idle connections are the same as the plain row's until their first pinned request; https rows
/// aside: the probe that holds the connections speaks plain HTTP).
#[must_use]
pub fn applies(config: &Config) -> bool {
    config.tls.is_none()
        && matches!(
            config.balancer,
            Balancer::StickyHttp { splice: false } | Balancer::HaproxyHttp | Balancer::NginxHash
        )
}

/// Measures `config`'s idle-connection memory on a fresh balancer.
///
/// # Errors
/// The balancer does not start, serve or pin, or a process dies.
pub fn measure(
    config: &Config,
    topo: &Topology,
    work: &Workdir,
    sticky: &Path,
    exe: &Path,
    connections: u32,
) -> anyhow::Result<Idle> {
    let mut running = configs::start_with_env(config, topo, work, sticky, &ALLOCATOR_ENV)?;
    let checked = verify::functional(topo, exe, work, config)?;
    let cookie = match config.load {
        Load::Pinned => Some(checked.cookie.as_ref().context("no cookie to pin with")?.0.clone()),
        Load::Plain => None,
    };
    let warm = connections / 10;
    let spec = Spec::Idle { target: config.target(), cookie: cookie.clone(), warm, connections, threads: 8 };
    let mut probe = spawn_probe(topo, exe, &spec)?;
    let stdout = probe.child_mut().stdout.take().context("probe stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = read_report(lines.next())?;
    ensure!(first.bad == 0 && first.open == u64::from(warm), "idle connections, first phase: {first:?}");
    let rss_before_kib = settled_rss(topo)?;
    {
        use std::io::Write as _;
        let stdin = probe.child_mut().stdin.as_mut().context("probe stdin")?;
        stdin.write_all(b"go\n")?;
        stdin.flush()?;
    }
    let held = read_report(lines.next())?;
    let rss_after_kib = settled_rss(topo)?;
    drop(probe);
    for p in &mut running.procs {
        p.check_alive()?;
    }
    drop(running);
    ensure!(held.bad == 0, "idle connections: {} requests got no backend's 200", held.bad);
    ensure!(held.unpinned == 0, "idle connections: the pinned cookie reached {:?}", held.backends);
    ensure!(held.open == u64::from(connections), "idle connections: {} of {connections} open", held.open);
    // Signed: an allocator returning pages between the readings can make the growth negative, and the
    // report should show that rather than a floor of 0.
    #[expect(clippy::cast_precision_loss, reason = "KiB and connection counts far below 2^52")]
    let kib_per_connection = (rss_after_kib as f64 - rss_before_kib as f64) / f64::from(connections);
    Ok(Idle {
        connections: held.open,
        rss_before_kib,
        rss_after_kib,
        kib_per_connection,
        check: format!(
            "{} connections, one {} request each, answered by {:?}",
            held.open,
            if cookie.is_some() { "pinned" } else { "cookie-less" },
            held.backends
        ),
    })
}

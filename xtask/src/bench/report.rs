//! The bench's results: the JSON schema (stable, `schema` names its version), the summaries and
//! goals computed from the runs, and the Markdown rendering.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::{Deserialize, Serialize};

use super::{
    configs::{self, Config, Goal},
    idle::Idle,
    memory::Level,
};

/// Version of the JSON layout; bump it when a field changes meaning or goes away.
pub const SCHEMA: &str = "sticky-bench/2";
/// The RSS goal at 100k sessions/flows, MiB.
pub const RSS_GOAL_MIB: u64 = 64;

/// Everything one `cargo xtask bench` measured.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Results {
    /// [`SCHEMA`].
    pub schema: String,
    /// UTC start time, RFC 3339.
    pub started: String,
    /// Where it ran.
    pub machine: Machine,
    /// How it ran.
    pub method: Method,
    /// One row per configuration, in run order.
    pub configurations: Vec<Row>,
    /// sticky's memory levels.
    pub memory: Vec<Level>,
    /// Why the memory measurement failed, if it did.
    pub memory_note: Option<String>,
    /// The goals, evaluated.
    pub goals: Vec<GoalResult>,
}

/// The machine.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Machine {
    /// /proc/cpuinfo model name.
    pub cpu_model: String,
    /// Online CPUs.
    pub cpus: usize,
    /// `uname -r`.
    pub kernel: String,
    /// Load averages (1, 5, 15 min) before the first configuration.
    pub load_before: [f64; 3],
    /// Load averages after the last.
    pub load_after: [f64; 3],
    /// Versions of sticky and the peers.
    pub versions: BTreeMap<String, String>,
}

/// The method.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Method {
    /// `--quick` (smoke test: short runs, figures not meant for comparison).
    pub quick: bool,
    /// Warm-up seconds (that run also checks who answered).
    pub warmup_s: u32,
    /// Seconds per measured run.
    pub duration_s: u32,
    /// Measured runs per configuration in each round.
    pub runs: u32,
    /// Rounds: every configuration measured once per round, in turn (1 in results written before).
    #[serde(default = "one")]
    pub rounds: u32,
    /// The load generator and its settings.
    pub load: String,
    /// CPU placement.
    pub placement: String,
}

fn one() -> u32 {
    1
}

/// A configuration's outcome.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Served, pinned and measured.
    Ok,
    /// Failed to start, serve or pin (the note says how).
    Failed,
    /// Cannot run with this build (the note says why).
    Unavailable,
}

/// One configuration's results.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Row {
    /// Configuration id.
    pub id: String,
    /// Label.
    pub title: String,
    /// Outcome.
    pub status: Status,
    /// Why it failed or is unavailable.
    pub note: Option<String>,
    /// What the probe checked.
    pub check: Option<String>,
    /// What the warm-up run's body count showed.
    pub check_under_load: Option<String>,
    /// The measured runs.
    pub runs: Vec<Run>,
    /// Medians and ratios (status ok only).
    pub summary: Option<Summary>,
    /// Memory per idle keep-alive client connection (http balancers; see `idle.rs`).
    pub idle: Option<Idle>,
}

impl Row {
    /// The row of a configuration about to run: ok until something fails, nothing measured yet.
    #[must_use]
    pub fn new(id: &str, title: &str) -> Self {
        Self {
            id: id.to_owned(),
            title: title.to_owned(),
            status: Status::Ok,
            note: None,
            check: None,
            check_under_load: None,
            runs: Vec::new(),
            summary: None,
            idle: None,
        }
    }
}

/// One measured wrk run with the CPU time around it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Run {
    /// Requests per second.
    pub rps: f64,
    /// Requests completed.
    pub requests: u64,
    /// Length, s.
    pub seconds: f64,
    /// Latency percentiles, µs.
    pub p50_us: u64,
    /// 99th.
    pub p99_us: u64,
    /// 99.9th.
    pub p999_us: u64,
    /// Socket errors plus statuses >= 400 (must be 0).
    pub errors: u64,
    /// utime + stime of every process in the balancer namespace, s.
    pub lb_process_cpu_s: f64,
    /// The user-space part of it (utime), s; 0 in results written before it was recorded.
    #[serde(default)]
    pub lb_process_user_s: f64,
    /// Busy time of the load CPU (cpu0), s.
    pub load_cpu_busy_s: f64,
    /// Busy time of the balancer CPU (cpu1), s.
    pub lb_cpu_busy_s: f64,
    /// Softirq time of the balancer CPU, s.
    pub lb_cpu_softirq_s: f64,
    /// Softirq time of all CPUs, s.
    pub softirq_s: f64,
    /// wrk's TLS handshakes in the run (https rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<super::tls::Handshakes>,
}

/// A configuration's figures over its runs.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Summary {
    /// Median req/s.
    pub rps_median: f64,
    /// Lowest run.
    pub rps_min: f64,
    /// Highest run.
    pub rps_max: f64,
    /// Median of the runs' p50, µs.
    pub p50_us: u64,
    /// Median of the runs' p99, µs.
    pub p99_us: u64,
    /// Median of the runs' p99.9, µs.
    pub p999_us: u64,
    /// Balancer processes' CPU time per request, µs (0 for kernel paths: no process works).
    pub lb_process_us_per_req: f64,
    /// The user-space part of it (utime; the rest is the kernel's work in the balancer's context).
    #[serde(default)]
    pub lb_user_us_per_req: f64,
    /// Busy time of the balancer CPU per request, µs: the process plus the balancer namespace's
    /// receive path (steered there), plus anything else that ran on that CPU.
    pub lb_cpu_us_per_req: f64,
    /// Softirq time of the balancer CPU per request, µs.
    pub lb_cpu_softirq_us_per_req: f64,
    /// Softirq time of all CPUs per request, µs (the kernel's packet work, wherever it ran).
    pub softirq_us_per_req: f64,
    /// Busy share of the load CPU, %.
    pub load_cpu_busy_pct: f64,
    /// Busy share of the balancer CPU, %.
    pub lb_cpu_busy_pct: f64,
    /// Median req/s / direct's.
    pub ratio_direct: Option<f64>,
    /// The HAProxy row compared with.
    pub peer: Option<String>,
    /// Median req/s / the peer's.
    pub ratio_peer: Option<f64>,
}

/// A goal of the issue, as measured.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct GoalResult {
    /// The row it belongs to.
    pub config: String,
    /// The goal in words.
    pub goal: String,
    /// Met, not met, or `None` when a figure is missing.
    pub met: Option<bool>,
    /// The figures.
    pub detail: String,
}

/// The median of `v` (mean of the middle two for an even count); 0 for none.
#[must_use]
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => f64::midpoint(s[n / 2 - 1], s[n / 2]),
    }
}

#[expect(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "µs values")]
fn median_u64(v: impl Iterator<Item = u64>) -> u64 {
    median(&v.map(|x| x as f64).collect::<Vec<_>>()).round() as u64
}

/// Computes every ok row's summary (ratios need the direct and peer rows), then the goals.
pub fn summarize(rows: &mut [Row], memory: &[Level]) -> Vec<GoalResult> {
    #[expect(clippy::cast_precision_loss, reason = "request counts far below 2^52")]
    for row in rows.iter_mut().filter(|r| r.status == Status::Ok && !r.runs.is_empty()) {
        let rps: Vec<f64> = row.runs.iter().map(|r| r.rps).collect();
        let requests: f64 = row.runs.iter().map(|r| r.requests as f64).sum::<f64>().max(1.0);
        let seconds: f64 = row.runs.iter().map(|r| r.seconds).sum::<f64>().max(1e-9);
        let sum = |f: fn(&Run) -> f64| row.runs.iter().map(f).sum::<f64>();
        row.summary = Some(Summary {
            rps_median: median(&rps),
            rps_min: rps.iter().copied().fold(f64::INFINITY, f64::min),
            rps_max: rps.iter().copied().fold(0.0, f64::max),
            p50_us: median_u64(row.runs.iter().map(|r| r.p50_us)),
            p99_us: median_u64(row.runs.iter().map(|r| r.p99_us)),
            p999_us: median_u64(row.runs.iter().map(|r| r.p999_us)),
            lb_process_us_per_req: sum(|r| r.lb_process_cpu_s) / requests * 1e6,
            lb_user_us_per_req: sum(|r| r.lb_process_user_s) / requests * 1e6,
            lb_cpu_us_per_req: sum(|r| r.lb_cpu_busy_s) / requests * 1e6,
            lb_cpu_softirq_us_per_req: sum(|r| r.lb_cpu_softirq_s) / requests * 1e6,
            softirq_us_per_req: sum(|r| r.softirq_s) / requests * 1e6,
            load_cpu_busy_pct: sum(|r| r.load_cpu_busy_s) / seconds * 100.0,
            lb_cpu_busy_pct: sum(|r| r.lb_cpu_busy_s) / seconds * 100.0,
            ratio_direct: None,
            peer: None,
            ratio_peer: None,
        });
    }
    let rps_of = |rows: &[Row], id: &str| -> Option<f64> {
        rows.iter().find(|r| r.id == id).and_then(|r| r.summary.as_ref()).map(|s| s.rps_median)
    };
    let ratios: Vec<(Option<f64>, Option<String>, Option<f64>)> = rows
        .iter()
        .map(|row| {
            let Some(s) = &row.summary else { return (None, None, None) };
            let config = configs::ALL.iter().find(|c| c.id == row.id);
            let peer = config.and_then(|c| c.peer);
            let direct = rps_of(rows, config.map_or("direct", Config::direct));
            (
                direct.map(|d| s.rps_median / d),
                peer.map(str::to_owned),
                peer.and_then(|p| rps_of(rows, p)).map(|p| s.rps_median / p),
            )
        })
        .collect();
    for (row, (rd, peer, rp)) in rows.iter_mut().zip(ratios) {
        if let Some(s) = &mut row.summary {
            (s.ratio_direct, s.peer, s.ratio_peer) = (rd, peer, rp);
        }
    }
    let mut goals = Vec::new();
    for config in configs::ALL {
        let Some(row) = rows.iter().find(|r| r.id == config.id) else { continue };
        for goal in config.goals {
            goals.push(evaluate(rows, row, *goal));
        }
    }
    for mode in ["sticky-http", "sticky-tcp-kernel"] {
        if let Some(level) = memory.iter().filter(|l| l.mode == mode).max_by_key(|l| l.live) {
            let mib = level.rss_kib.div_ceil(1024);
            let at_100k = level.live >= 100_000;
            goals.push(GoalResult {
                config: mode.to_owned(),
                goal: format!("RSS at 100k live sessions/flows <= {RSS_GOAL_MIB} MiB"),
                met: at_100k.then_some(mib <= RSS_GOAL_MIB),
                detail: format!(
                    "{:.1} MiB RSS with {} live, {} client connections open{}{}",
                    kib_to_mib(level.rss_kib),
                    level.live,
                    level.open_connections,
                    level
                        .rss_sessions_kib
                        .map(|k| format!("; {:.1} MiB with the sessions alone (8 connections)", kib_to_mib(k)))
                        .unwrap_or_default(),
                    if at_100k { "" } else { " (100k not measured in this run)" }
                ),
            });
        }
    }
    goals
}

#[expect(clippy::cast_precision_loss, reason = "KiB counts")]
fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn evaluate(rows: &[Row], row: &Row, goal: Goal) -> GoalResult {
    match goal {
        Goal::AtLeastPeerWithP99(peer, factor) => evaluate_rps(rows, row, peer, factor, true),
        Goal::AtLeast(peer, factor) => evaluate_rps(rows, row, peer, factor, false),
        Goal::CpuAtMost(peer, factor) => evaluate_at_most(rows, row, peer, factor, Figure::Cpu),
        Goal::CpuAtMostBest(peers, factor) => evaluate_at_most_best(rows, row, peers, factor, Figure::Cpu),
        Goal::IdleAtMost(peer, factor) => evaluate_at_most(rows, row, peer, factor, Figure::Idle),
    }
}

/// Why a goal could not be evaluated: which of its two rows lacks the figure.
fn missing(row: &Row, peer: &str, row_has: bool) -> String {
    match (row.status, row_has) {
        (Status::Unavailable, _) => "not available in this build".to_owned(),
        (_, false) => format!("{} not measured", row.id),
        (_, true) => format!("{peer} not measured"),
    }
}

fn evaluate_rps(rows: &[Row], row: &Row, peer: &str, factor: f64, p99: bool) -> GoalResult {
    let find = |id: &str| rows.iter().find(|r| r.id == id).and_then(|r| r.summary.as_ref());
    let words = if (factor - 1.0).abs() < f64::EPSILON {
        format!("req/s no worse than {peer}")
    } else {
        format!("req/s >= {factor}x {peer}")
    };
    let words = if p99 { format!("{words}, p99 no worse") } else { words };
    let (Some(s), Some(p)) = (row.summary.as_ref(), find(peer)) else {
        let detail = missing(row, peer, row.summary.is_some());
        return GoalResult { config: row.id.clone(), goal: words, met: None, detail };
    };
    let ratio = s.rps_median / p.rps_median;
    let mut met = ratio >= factor;
    let mut detail = format!("{ratio:.2}x ({:.0} vs {:.0} req/s)", s.rps_median, p.rps_median);
    if p99 {
        met &= s.p99_us <= p.p99_us;
        let _ = write!(detail, "; p99 {} vs {} µs", s.p99_us, p.p99_us);
    }
    GoalResult { config: row.id.clone(), goal: words, met: Some(met), detail }
}

/// A cost figure of a row, where lower is better.
#[derive(Clone, Copy)]
enum Figure {
    /// LB process µs/request.
    Cpu,
    /// KiB per idle keep-alive client connection.
    Idle,
}

impl Figure {
    fn of(self, row: &Row) -> Option<f64> {
        match self {
            Self::Cpu => row.summary.as_ref().map(|s| s.lb_process_us_per_req),
            Self::Idle => row.idle.as_ref().map(|i| i.kib_per_connection),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Cpu => "LB process µs/req",
            Self::Idle => "KiB per idle connection",
        }
    }
}

fn evaluate_at_most(rows: &[Row], row: &Row, peer: &str, factor: f64, figure: Figure) -> GoalResult {
    let words = if (factor - 1.0).abs() < f64::EPSILON {
        format!("{} <= {peer}'s", figure.name())
    } else {
        format!("{} <= {factor}x {peer}'s", figure.name())
    };
    let theirs = rows.iter().find(|r| r.id == peer).and_then(|r| figure.of(r));
    let (Some(ours), Some(theirs)) = (figure.of(row), theirs) else {
        let detail = missing(row, peer, figure.of(row).is_some());
        return GoalResult { config: row.id.clone(), goal: words, met: None, detail };
    };
    judge_at_most(row, words, ours, theirs, factor, "")
}

/// `figure` at most `factor` x the lowest of the `peers` rows' figures; every peer must be measured
/// (a best peer among a subset would flatter the row).
fn evaluate_at_most_best(rows: &[Row], row: &Row, peers: &[&str], factor: f64, figure: Figure) -> GoalResult {
    let names = peers.join(", ");
    let words = if (factor - 1.0).abs() < f64::EPSILON {
        format!("{} <= the best of {names}", figure.name())
    } else {
        format!("{} <= {factor}x the best of {names}", figure.name())
    };
    let theirs: Vec<(&str, Option<f64>)> =
        peers.iter().map(|p| (*p, rows.iter().find(|r| r.id == *p).and_then(|r| figure.of(r)))).collect();
    let ours = figure.of(row);
    let unmeasured = theirs.iter().find(|(_, f)| f.is_none()).map(|(p, _)| *p);
    let (Some(ours), None) = (ours, unmeasured) else {
        let detail = missing(row, unmeasured.unwrap_or_default(), ours.is_some());
        return GoalResult { config: row.id.clone(), goal: words, met: None, detail };
    };
    let (best, theirs) = theirs
        .iter()
        .filter_map(|(p, f)| f.map(|f| (*p, f)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or(("none", f64::INFINITY));
    judge_at_most(row, words, ours, theirs, factor, &format!("{best} "))
}

/// The verdict of an at-most goal once both figures are in: `ours <= factor x theirs`, or no measurement
/// when either is negative (RSS fell while connections were added: the allocator handed pages back).
/// `peer` names the peer compared with in the detail (with a trailing space), or is empty.
fn judge_at_most(row: &Row, words: String, ours: f64, theirs: f64, factor: f64, peer: &str) -> GoalResult {
    if ours < 0.0 || theirs < 0.0 {
        let detail = format!("not a measurement: RSS fell ({ours:.2} vs {theirs:.2})");
        return GoalResult { config: row.id.clone(), goal: words, met: None, detail };
    }
    let ratio = ours / theirs.max(1e-9);
    GoalResult {
        config: row.id.clone(),
        goal: words,
        met: Some(ours <= theirs * factor),
        detail: format!("{ratio:.2}x {peer}({ours:.2} vs {theirs:.2})"),
    }
}

fn k(rps: f64) -> String {
    format!("{:.1}k", rps / 1000.0)
}

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}"))
}

fn met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// The Markdown report.
#[must_use]
pub fn markdown(r: &Results) -> String {
    let mut md = String::new();
    write_preamble(&mut md, r);
    write_configurations(&mut md, r);
    write_memory(&mut md, &r.memory);
    write_goals_and_checks(&mut md, r);
    md
}

/// The title, the machine and the method.
fn write_preamble(md: &mut String, r: &Results) {
    let machine = &r.machine;
    let _ = writeln!(md, "# sticky bench, {}\n", r.started);
    if r.method.quick {
        let _ = writeln!(
            md,
            "**--quick: a smoke run. The figures are too short to compare; the checks are what counts.**\n"
        );
    }
    let _ = writeln!(
        md,
        "Machine: {} x {}, kernel {}. Load average before {:.2} {:.2} {:.2}, after {:.2} {:.2} {:.2}.",
        machine.cpus,
        machine.cpu_model,
        machine.kernel,
        machine.load_before[0],
        machine.load_before[1],
        machine.load_before[2],
        machine.load_after[0],
        machine.load_after[1],
        machine.load_after[2]
    );
    let versions: Vec<String> = machine.versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(md, "Versions: {}.\n", versions.join("; "));
    let _ = writeln!(
        md,
        "Method: {}; {} rounds, in each every configuration is started, warmed up {} s (checking who answered) and \
         measured {} x {} s, so a slow stretch of the machine falls on all of them (the iptables rows take all their \
         runs after the last round: their nat table would tax every later row); req/s is the median (min–max) of all \
         runs, latencies are medians of the runs' percentiles, CPU per request is over all runs. {}\n",
        r.method.load, r.method.rounds, r.method.warmup_s, r.method.runs, r.method.duration_s, r.method.placement
    );
}

/// The table of configurations: one row each, with its goals.
fn write_configurations(md: &mut String, r: &Results) {
    let _ = writeln!(
        md,
        "| Configuration | req/s median (min–max) | p50 µs | p99 µs | p99.9 µs | LB process µs/req | of it user | KiB/idle conn | LB core µs/req | softirq µs/req (all CPUs) | busy % cpu0/cpu1 | x direct | x HAProxy | Goals |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &r.configurations {
        let goals: Vec<String> = r
            .goals
            .iter()
            .filter(|g| g.config == row.id)
            .map(|g| format!("{}: {} ({})", g.goal, met(g.met), g.detail))
            .collect();
        let goals = goals.join("<br>");
        if let (Some(s), Status::Ok) = (&row.summary, row.status) {
            let peer = match (&s.peer, s.ratio_peer) {
                (Some(p), Some(x)) => format!("{x:.2} ({})", p.trim_start_matches("haproxy-")),
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                md,
                "| {} | **{}** ({}–{}) | {} | {} | {} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {:.0}/{:.0} | {} | {} | {} |",
                row.title,
                k(s.rps_median),
                k(s.rps_min),
                k(s.rps_max),
                s.p50_us,
                s.p99_us,
                s.p999_us,
                s.lb_process_us_per_req,
                s.lb_user_us_per_req,
                row.idle.as_ref().map_or_else(|| "–".to_owned(), |i| format!("{:.2}", i.kib_per_connection)),
                s.lb_cpu_us_per_req,
                s.softirq_us_per_req,
                s.load_cpu_busy_pct,
                s.lb_cpu_busy_pct,
                ratio(s.ratio_direct),
                peer,
                goals
            );
        } else {
            let what = match row.status {
                Status::Unavailable => "not available in this build",
                _ => "**FAILED**",
            };
            let note = row.note.as_deref().unwrap_or_default().lines().next().unwrap_or_default();
            let _ = writeln!(md, "| {} | {what}: {note} | | | | | | | | | | | | {goals} |", row.title);
        }
    }
}

/// sticky's memory, if it was measured.
fn write_memory(md: &mut String, levels: &[Level]) {
    if levels.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n## sticky's memory\n");
    let _ = writeln!(
        md,
        "| Mode | live sessions/flows | open client connections | RSS at start | RSS, sessions alone | RSS | BPF maps (kernel) | CONNS entries | check |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for l in levels {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} MiB | {} | **{:.1} MiB** | {} | {} | {} |",
            l.mode,
            l.live,
            l.open_connections,
            kib_to_mib(l.rss_start_kib),
            l.rss_sessions_kib.map_or_else(|| "–".to_owned(), |k| format!("{:.1} MiB (8 connections)", kib_to_mib(k))),
            kib_to_mib(l.rss_kib),
            if l.bpf_maps_kib == 0 { "–".to_owned() } else { format!("{:.1} MiB", kib_to_mib(l.bpf_maps_kib)) },
            l.conns_entries.map_or_else(|| "–".to_owned(), |n| n.to_string()),
            l.check
        );
    }
    let _ = writeln!(
        md,
        "\nhttp: a live session is a cookie this process issued and that came back (sticky stores nothing per \
             session); {} of the clients keep an idle connection open while RSS is read. tcp: a live flow is an \
             open connection through the VIP (two CONNS entries); the kernel maps are preallocated for --max-flows \
             131072, so their memory does not grow with the flows.",
        super::memory::held()
    );
}

/// The goals, then what each configuration's probe checked.
fn write_goals_and_checks(md: &mut String, r: &Results) {
    if !r.goals.is_empty() {
        let _ = writeln!(md, "\n## Goals (issues 7, 12 and 19; measured here, never asserted)\n");
        for g in &r.goals {
            let _ = writeln!(md, "- {}: {}: {} ({})", g.config, g.goal, met(g.met), g.detail);
        }
    }
    let _ = writeln!(md, "\n## Checks\n");
    for row in &r.configurations {
        let _ = writeln!(
            md,
            "- {}: {}{}",
            row.id,
            row.check.as_deref().or(row.note.as_deref()).unwrap_or("not run"),
            row.check_under_load.as_deref().map(|c| format!("; under load: {c}")).unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < 1e-12);
        assert!((median(&[4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < 1e-12);
        assert!(median(&[]).abs() < 1e-12);
    }
}

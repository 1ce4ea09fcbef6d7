//! `cargo xtask bench`: sticky side by side with HAProxy, nginx and iptables in network namespaces,
//! one load generator, one balancer core; every configuration checked from response bodies; results
//! as JSON, Markdown and an SVG plot. bench/README.md explains the method and how to read it.

mod configs;
mod h2load;
mod idle;
mod measure;
mod memory;
mod plot;
pub mod probe;
mod report;
mod tls;
mod topology;
mod verify;
mod workdir;
mod wrk;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::SystemTime,
};

use anyhow::{Context as _, bail, ensure};

use configs::{Balancer, Config, Load, Workdir};
use report::{Row, Run, Status};
use topology::{LB_CPU, LOAD_CPU, Topology};

/// Options of `cargo xtask bench`.
#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Smoke run: 1 s warm-up and one 2 s run per configuration, memory at 1k sessions/flows only.
    /// Fails only if a configuration fails to serve or to pin, never on a figure.
    #[arg(long)]
    pub quick: bool,
    /// Seconds per measured run [default: 10; --quick: 2].
    #[arg(long, value_name = "S")]
    pub duration: Option<u32>,
    /// Measured runs per configuration in each round [default: 1].
    #[arg(long, value_name = "N")]
    pub runs: Option<u32>,
    /// Rounds: every configuration is started, checked and measured once per round, in turn, so a
    /// slow stretch of the machine falls on all of them rather than on one row's consecutive runs
    /// (the iptables rows take all their runs after the last round: their nat table taxes every
    /// later row) [default: 3; --quick: 1].
    #[arg(long, value_name = "N")]
    pub rounds: Option<u32>,
    /// Output directory [default: target/bench/<UTC time>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Only the configurations whose id matches this regex. Ids: memory-http, memory-tcp (the memory
    /// measurements, first), direct, direct-v6, sticky-http-new, sticky-http-pinned, sticky-http-pinned-splice, haproxy-http-new,
    /// haproxy-http-pinned, nginx-hash, sticky-https-pinned, sticky-https-handshake, sticky-https-resumed,
    /// haproxy-https-pinned, haproxy-https-handshake, haproxy-https-resumed, nginx-https, nginx-https-handshake,
    /// nginx-https-resumed, sticky-h2-pinned, sticky-h2-firstwave, haproxy-h2-pinned, nginx-h2 (h2load rows),
    /// sticky-tcp-kernel, sticky-tcp-kernel-v6 (IPv6), sticky-tcp-user, haproxy-tcp, iptables-dnat,
    /// ip6tables-dnat-v6.
    #[arg(long, value_name = "REGEX")]
    pub only: Option<String>,
    /// Use this sticky binary instead of building target/release/sticky.
    #[arg(long, value_name = "PATH")]
    pub sticky: Option<PathBuf>,
    /// Steer the balancer namespace's receive processing to the balancer's core (RPS), so kernel
    /// paths get that core as user-space balancers do. Default: softirq runs where the sender runs,
    /// as in shared/perf-baseline.md (on this VM the cross-CPU interrupts of RPS cost a lot).
    #[arg(long)]
    pub rps: bool,
    /// Skip the set-up step (installing missing packages).
    #[arg(long)]
    pub no_setup: bool,
}

impl Options {
    /// The smoke run of `cargo xtask test`: `--quick` into `out`.
    #[must_use]
    pub fn smoke(out: PathBuf) -> Self {
        Self {
            quick: true,
            duration: None,
            runs: None,
            rounds: None,
            out: Some(out),
            only: None,
            sticky: None,
            rps: false,
            no_setup: true,
        }
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Fails once Ctrl-C or SIGTERM arrived, so the caller unwinds and every guard cleans up.
///
/// # Errors
/// Interrupted.
pub fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Runs the bench with the `sticky` binary at `sticky` and writes its results to the output directory.
///
/// # Errors
/// The topology or the backends cannot be set up, a configuration failed to serve or to pin (after
/// writing every result), or the run was interrupted.
pub fn run(workspace: &Path, options: &Options, sticky: &Path) -> anyhow::Result<()> {
    // Ctrl-C reaches every child too (same process group); this process then cleans up and exits.
    static HANDLER: std::sync::Once = std::sync::Once::new();
    ensure!(xtask::setup::is_root(), "the bench needs root (network namespaces, BPF, iptables)");
    HANDLER.call_once(|| {
        let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::Relaxed));
    });
    let only = options.only.as_deref().map(regex::Regex::new).transpose().context("bad --only regex")?;
    let selected = |id: &str| only.as_ref().is_none_or(|r| r.is_match(id));
    let (warmup, duration, runs, rounds) = if options.quick {
        (1, options.duration.unwrap_or(2), options.runs.unwrap_or(1), options.rounds.unwrap_or(1))
    } else {
        (2, options.duration.unwrap_or(10), options.runs.unwrap_or(1), options.rounds.unwrap_or(3))
    };
    ensure!(duration >= 1 && runs >= 1 && rounds >= 1, "--duration, --runs and --rounds must be at least 1");
    let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let out = options.out.clone().unwrap_or_else(|| workspace.join("target/bench").join(started.replace(':', "")));
    let work = Workdir { dir: out.join("work") };
    std::fs::create_dir_all(&work.dir).with_context(|| format!("failed to create {}", work.dir.display()))?;
    let sticky = std::fs::canonicalize(sticky).with_context(|| format!("no sticky binary at {}", sticky.display()))?;
    let exe = std::env::current_exe().context("cannot find the xtask binary for the probe")?;
    let cpus = measure::cpu_times()?.len();
    ensure!(
        cpus > LB_CPU as usize,
        "the bench pins the balancer to cpu{LB_CPU}: it needs 2 CPUs, this machine has {cpus}"
    );
    write_cookie_key(&work.file("cookie.key"))?;
    // Without a certificate (openssl or cc missing) the https rows fail; the others still run.
    let tls_missing = configs::ALL
        .iter()
        .any(|c| c.tls.is_some() && selected(c.id))
        .then(|| tls::prepare(&work).err().map(|e| format!("the https rows' certificate: {e:#}")))
        .flatten();

    let sticky_help = command_output(&sticky, &["run", "--help"]);
    let machine = report::Machine {
        cpu_model: cpu_model(),
        cpus,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        load_before: measure::loadavg(),
        load_after: [0.0; 3],
        versions: versions(&sticky),
    };
    let method = report::Method {
        quick: options.quick,
        warmup_s: warmup,
        duration_s: duration,
        runs,
        rounds,
        load: format!(
            "wrk (Debian) -t{} -c{} keep-alive (the https handshake and resumed rows: Connection: close, a new TLS \
             connection per request), from the client namespace",
            wrk::THREADS,
            wrk::CONNECTIONS
        ),
        placement: placement(options.rps),
    };
    eprintln!("bench: output in {}", out.display());
    eprintln!("bench: load average before: {:?}", machine.load_before);

    let topo = Topology::build(options.rps).context("failed to build the namespace topology")?;
    let mut backends = configs::start_backends(&topo, &work, "backends", 1..=configs::BACKENDS, 1)?;

    let modes = memory::Modes { http: selected("memory-http"), tcp: selected("memory-tcp") };
    let (memory_levels, memory_note) = measure_memory(&topo, &work, &sticky, &exe, options.quick, modes);

    let selected: Vec<&Config> = configs::ALL.iter().filter(|c| selected(c.id)).collect();
    let bench = Bench {
        topo: &topo,
        work: &work,
        sticky: &sticky,
        exe: &exe,
        options,
        sticky_help: &sticky_help,
        tls_missing: tls_missing.as_ref(),
    };
    let mut rows = measure_rows(&selected, &bench, (warmup, duration, runs, rounds), &mut backends)?;
    drop(backends);
    drop(topo);

    let goals = report::summarize(&mut rows, &memory_levels);
    let results = report::Results {
        schema: report::SCHEMA.to_owned(),
        started,
        machine: report::Machine { load_after: measure::loadavg(), ..machine },
        method,
        configurations: rows,
        memory: memory_levels,
        memory_note,
        goals,
    };
    write_results(&out, &results)?;
    let failed: Vec<&str> =
        results.configurations.iter().filter(|r| r.status == Status::Failed).map(|r| r.id.as_str()).collect();
    if !failed.is_empty() || results.memory_note.is_some() {
        bail!(
            "configurations that failed to serve or to pin: {failed:?}{}",
            if results.memory_note.is_some() { "; the memory measurement failed" } else { "" }
        );
    }
    Ok(())
}

/// What every row's measurement shares.
struct Bench<'a> {
    topo: &'a Topology,
    work: &'a Workdir,
    sticky: &'a Path,
    exe: &'a Path,
    options: &'a Options,
    /// `sticky run --help`, which says what this build can do.
    sticky_help: &'a str,
    /// Why the https rows' certificate could not be made.
    tls_missing: Option<&'a String>,
}

/// Every selected configuration's row, in rounds (see `--rounds`); the iptables rows last, with all
/// their runs at once, because their nat table taxes every later row.
///
/// # Errors
/// Interrupted, or the nginx backends died.
fn measure_rows(
    selected: &[&Config],
    bench: &Bench<'_>,
    (warmup, duration, runs, rounds): (u32, u32, u32, u32),
    backends: &mut testkit::ChildGuard,
) -> anyhow::Result<Vec<Row>> {
    let (rounded, last): (Vec<&Config>, Vec<&Config>) =
        selected.iter().copied().partition(|c| c.balancer != Balancer::IptablesDnat);
    let mut rows = Vec::new();
    for round in 1..=rounds {
        for &config in &rounded {
            check_interrupted()?;
            if round == 1 {
                rows.push(first_round(config, bench, (warmup, duration, runs)));
            } else if let Some(row) = rows.iter_mut().find(|r: &&mut Row| r.id == config.id && r.status == Status::Ok) {
                eprintln!("bench: {}: round {round}/{rounds}", config.id);
                again(row, config, bench, (warmup, duration, runs), round);
            }
            backends.check_alive().context("the nginx backends died")?;
        }
    }
    for &config in &last {
        check_interrupted()?;
        rows.push(first_round(config, bench, (warmup, duration, runs * rounds)));
        backends.check_alive().context("the nginx backends died")?;
    }
    Ok(rows)
}

/// A configuration's row from its first round: failed at once if it needs the certificate that could
/// not be made, else measured ([`measure_row`]).
fn first_round(config: &Config, bench: &Bench<'_>, timing: (u32, u32, u32)) -> Row {
    let unavailable = configs::unavailable(config, bench.sticky_help);
    if let (Some(why), None, true) = (bench.tls_missing, unavailable, config.tls.is_some()) {
        eprintln!("bench: {}: FAILED: {why}", config.id);
        let mut row = Row::new(config.id, config.title);
        row.status = Status::Failed;
        row.note = Some(why.clone());
        return row;
    }
    measure_row(config, bench, timing)
}

/// A later round of an ok row: started, checked and measured again, its runs added; a failure now
/// fails the row.
fn again(row: &mut Row, config: &Config, bench: &Bench<'_>, timing: (u32, u32, u32), round: u32) {
    let mut more = Row::new(config.id, config.title);
    match measure_config(config, bench, timing, &mut more) {
        Ok(()) => row.runs.extend(more.runs),
        Err(e) => {
            eprintln!("bench: {}: FAILED in round {round}: {e:#}", config.id);
            row.status = Status::Failed;
            row.note = Some(format!("round {round}: {e:#}"));
        }
    }
}

/// One configuration's row: unavailable in this build, or started, checked and measured (with its
/// idle-connection memory where it applies), or failed with the reason.
fn measure_row(config: &Config, bench: &Bench<'_>, timing: (u32, u32, u32)) -> Row {
    let Bench { topo, work, sticky, exe, options, sticky_help, .. } = *bench;
    let mut row = Row::new(config.id, config.title);
    if let Some(why) = configs::unavailable(config, sticky_help) {
        eprintln!("bench: {}: {why}", config.id);
        row.status = Status::Unavailable;
        row.note = Some(why);
    } else {
        eprintln!("bench: {}: {}", config.id, config.title);
        let mut measured = measure_config(config, bench, timing, &mut row);
        if measured.is_ok() && idle::applies(config) {
            let connections = if options.quick { idle::CONNECTIONS_QUICK } else { idle::CONNECTIONS };
            measured = idle::measure(config, topo, work, sticky, exe, connections)
                .map(|idle| {
                    eprintln!(
                        "bench: {}: {:.2} KiB per idle connection ({})",
                        config.id, idle.kib_per_connection, idle.check
                    );
                    row.idle = Some(idle);
                })
                .context("idle connections");
        }
        if let Err(e) = measured {
            eprintln!("bench: {}: FAILED: {e:#}", config.id);
            row.status = Status::Failed;
            row.note = Some(format!("{e:#}"));
        }
    }
    row
}

/// Starts one configuration, checks it, warms it up (checking who answered under load), measures it.
fn measure_config(
    config: &Config,
    bench: &Bench<'_>,
    (warmup, duration, runs): (u32, u32, u32),
    row: &mut Row,
) -> anyhow::Result<()> {
    let Bench { topo, work, sticky, exe, .. } = *bench;
    let mut running = configs::start(config, topo, work, sticky)?;
    let checked = verify::functional(topo, exe, work, config)?;
    row.check = Some(checked.summary.clone());
    let cookie = match config.load {
        Load::Pinned => Some(checked.cookie.as_ref().context("no cookie to pin with")?.0.as_str()),
        Load::Plain => None,
    };
    if config.tls == Some(configs::Tls::H2) {
        return measure_h2(config, topo, work, cookie, (warmup, duration, runs), &mut running, row);
    }
    let target = config.target();
    let files = tls::Files::of(work);
    let https = config.tls.map(|tls| wrk::Https { tls, files: &files });
    let connections = u64::from(wrk::CONNECTIONS);
    let (out, handshakes) = wrk::run_wrk(topo, &work.dir, target, cookie, warmup, wrk::Script::Verify, https)?;
    let counted: wrk::Verify = wrk::parse(&out, "STICKY-BENCH-VERIFY ")?;
    let mut under_load = verify::under_load(config, &checked, &counted)?;
    if let (Some(tls), Some(h)) = (config.tls, handshakes) {
        under_load = format!("{under_load}; {}", h.check(tls, counted.responses, connections)?);
    }
    row.check_under_load = Some(under_load);
    for i in 0..runs {
        check_interrupted()?;
        let pids = topo.lb.pids();
        let process_cpu = || measure::processes_cpu_s(&pids);
        let (cpu0, proc0) = (measure::cpu_times()?, process_cpu());
        let (out, handshakes) = wrk::run_wrk(topo, &work.dir, target, cookie, duration, wrk::Script::Report, https)?;
        let (cpu1, proc1) = (measure::cpu_times()?, process_cpu());
        let r: wrk::Report = wrk::parse(&out, "STICKY-BENCH-RESULT ")?;
        ensure!(r.requests > 0, "run {i}: no request completed");
        ensure!(r.errors.total() == 0, "run {i}: errors {:?} (statuses >= 400 or socket errors)", r.errors);
        if let (Some(tls), Some(h)) = (config.tls, handshakes) {
            h.check(tls, r.requests, connections).with_context(|| format!("run {i}"))?;
        }
        for p in &mut running.procs {
            p.check_alive()?;
        }
        record_run(row, config, (i, runs), &r, (&cpu0, &cpu1), (proc1.0 - proc0.0, proc1.1 - proc0.1), handshakes);
    }
    drop(running);
    Ok(())
}

/// Adds one measured run to `row` from its load generator's report and the CPU counters read around
/// it (`cpu`: before and after; `(user_s, process_cpu_s)`: the balancer's processes' user and total CPU
/// seconds in between),
/// and prints it as it lands: the same for wrk's and h2load's rows.
fn record_run(
    row: &mut Row,
    config: &Config,
    (i, runs): (u32, u32),
    r: &wrk::Report,
    (cpu0, cpu1): (&[measure::CpuTimes], &[measure::CpuTimes]),
    (user_s, process_cpu_s): (f64, f64),
    tls: Option<tls::Handshakes>,
) {
    let (l, b) = (LOAD_CPU as usize, LB_CPU as usize);
    #[expect(clippy::cast_precision_loss, reason = "µs durations")]
    let seconds = r.duration_us as f64 / 1e6;
    let run = Run {
        rps: r.rps(),
        requests: r.requests,
        seconds,
        p50_us: r.latency_us.p50,
        p99_us: r.latency_us.p99,
        p999_us: r.latency_us.p999,
        errors: r.errors.total(),
        lb_process_cpu_s: process_cpu_s,
        lb_process_user_s: user_s,
        load_cpu_busy_s: cpu1[l].busy - cpu0[l].busy,
        lb_cpu_busy_s: cpu1[b].busy - cpu0[b].busy,
        lb_cpu_softirq_s: cpu1[b].softirq - cpu0[b].softirq,
        softirq_s: cpu1.iter().zip(cpu0).map(|(a, z)| a.softirq - z.softirq).sum(),
        tls,
    };
    eprintln!(
        "bench: {}: run {}/{runs}: {:.0} req/s, p50 {} p99 {} p99.9 {} µs, balancer core {:.0}% busy",
        config.id,
        i + 1,
        run.rps,
        run.p50_us,
        run.p99_us,
        run.p999_us,
        run.lb_cpu_busy_s / seconds.max(1e-9) * 100.0
    );
    row.runs.push(run);
}

/// An h2 row's load and runs: h2load instead of wrk ([`h2load`]); the warm-up's responses must all be
/// 2xx (h2load shows no bodies: who answered was checked over h2 before, [`verify::functional`]).
fn measure_h2(
    config: &Config,
    topo: &Topology,
    work: &Workdir,
    cookie: Option<&str>,
    (warmup, duration, runs): (u32, u32, u32),
    running: &mut configs::Running<'_>,
    row: &mut Row,
) -> anyhow::Result<()> {
    let target = config.target();
    let warm = h2load::run(topo, &work.dir, target, cookie, warmup)?;
    ensure!(warm.errors.total() == 0, "warm-up: errors {:?} (statuses >= 400 or no response)", warm.errors);
    row.check_under_load = Some(format!(
        "h2load, {} connections x {} streams, h2 by ALPN: {} responses, all 2xx/3xx (h2load shows no bodies)",
        h2load::CLIENTS,
        h2load::STREAMS,
        warm.requests
    ));
    for i in 0..runs {
        check_interrupted()?;
        let pids = topo.lb.pids();
        let process_cpu = || measure::processes_cpu_s(&pids);
        let (cpu0, proc0) = (measure::cpu_times()?, process_cpu());
        let r = h2load::run(topo, &work.dir, target, cookie, duration)?;
        let (cpu1, proc1) = (measure::cpu_times()?, process_cpu());
        ensure!(r.errors.total() == 0, "run {i}: errors {:?} (statuses >= 400 or no response)", r.errors);
        for p in &mut running.procs {
            p.check_alive()?;
        }
        record_run(row, config, (i, runs), &r, (&cpu0, &cpu1), (proc1.0 - proc0.0, proc1.1 - proc0.1), None);
    }
    Ok(())
}

/// The CPU placement, in words for the report.
fn placement(rps: bool) -> String {
    let common = format!(
        "CPU: the balancer (every process and thread in its namespace: 1 sticky worker, 1 HAProxy thread, \
         1 nginx worker) is pinned to cpu{LB_CPU} with taskset; wrk, the probes and the nginx backends to \
         cpu{LOAD_CPU}."
    );
    if rps {
        format!(
            "{common} RPS (--rps) steers each namespace's receive processing to its core: the balancer \
             namespace's (TCP receive of its sockets, forwarding, netfilter, tc/eBPF) to cpu{LB_CPU}, the \
             client's and the backends' to cpu{LOAD_CPU}; so the kernel paths (DNAT, sticky tcp kernel, \
             direct's forwarding) run on the balancer's core too, as softirq."
        )
    } else {
        format!(
            "{common} Softirq runs on the sending CPU (veth delivers in the sender's context, as in \
             shared/perf-baseline.md): the kernel paths (direct's forwarding, DNAT, sticky tcp kernel) run \
             on cpu{LOAD_CPU} with wrk and the backends, and leave cpu{LB_CPU} idle; a user-space balancer's \
             receive path is split between the cores. Compare kernel paths with direct, user-space ones with \
             each other; the softirq column (all CPUs) shows what each path costs the kernel."
        )
    }
}

/// sticky's memory in the selected `modes` (at 1k sessions/flows with `quick`, else 10k and 100k), or
/// no levels and why the measurement failed.
fn measure_memory(
    topo: &Topology,
    work: &Workdir,
    sticky: &Path,
    exe: &Path,
    quick: bool,
    modes: memory::Modes,
) -> (Vec<memory::Level>, Option<String>) {
    if !(modes.http || modes.tcp) {
        return (Vec::new(), None);
    }
    let levels: &[u32] = if quick { &[1_000] } else { &[10_000, 100_000] };
    match memory::run(topo, work, sticky, exe, levels, modes) {
        Ok(levels) => (levels, None),
        Err(e) => {
            eprintln!("bench: memory: FAILED: {e:#}");
            (Vec::new(), Some(format!("{e:#}")))
        }
    }
}

/// Writes results.json, results.md and plot.svg into `out` (a plot that fails is only reported), and
/// prints the Markdown.
fn write_results(out: &Path, results: &report::Results) -> anyhow::Result<()> {
    let md = report::markdown(results);
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(results)? + "\n")?;
    std::fs::write(out.join("results.md"), &md)?;
    let plotted = plot::write(results, &out.join("plot.svg"));
    println!("{md}");
    println!("results: {0}/results.json, {0}/results.md, plot: {0}/plot.svg", out.display());
    if let Err(e) = plotted {
        eprintln!("bench: no plot: {e:#}");
    }
    Ok(())
}

/// A fresh 32-byte cookie secret (hex) from the kernel's random source.
fn write_cookie_key(path: &Path) -> anyhow::Result<()> {
    use std::{fmt::Write as _, io::Read as _};
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let hex = bytes.iter().fold(String::with_capacity(2 * bytes.len()), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    });
    std::fs::write(path, hex + "\n").with_context(|| format!("failed to write {}", path.display()))
}

fn command_output(program: &Path, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
        .unwrap_or_default()
}

fn first_line(text: &str) -> String {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_owned()
}

fn versions(sticky: &Path) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert(
        "sticky".into(),
        format!("{} ({})", first_line(&command_output(sticky, &["--version"])), sticky.display()),
    );
    v.insert("haproxy".into(), first_line(&command_output(Path::new("haproxy"), &["-v"])));
    v.insert("nginx".into(), first_line(&command_output(Path::new("nginx"), &["-v"])));
    v.insert("wrk".into(), wrk::version());
    v.insert("iptables".into(), first_line(&command_output(Path::new("iptables"), &["--version"])));
    v
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_default()
}

//! The `sticky` command line: parse, set up logging, run one subcommand until it ends or a signal arrives.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use sticky::{app, config, datapath::Datapath, l4, telemetry, whoami};

// The proxy allocates a few small objects per request (hyper's messages, header maps); mimalloc's
// thread-local free lists make those cheaper than glibc's malloc on the one-core benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sticky: a sticky-session load balancer for Docker Swarm, with an eBPF fast path.
///
/// Every flag can also be set through the environment variable named in its help (STICKY_...).
/// Logging: RUST_LOG (e.g. `info`, `sticky=debug`).
#[derive(Debug, Parser)]
#[command(name = "sticky", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sticky-session balancer: one service from --backend flags, several from --config FILE,
    /// or every Swarm service that opts in by labels with --docker.
    ///
    /// Durations are written like 500ms, 2s, 1m, 12h (a bare number is seconds).
    Run(Box<config::RunArgs>),
    /// Start three whoami backends and the balancer on loopback, print what to curl, serve until Ctrl-C.
    Demo {
        /// Address of the balancer.
        #[arg(long, env = "STICKY_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Worker threads of the balancer.
        #[arg(long, env = "STICKY_WORKERS", default_value_t = 1)]
        workers: usize,
    },
    /// A tiny demo app: every request gets `200 I'm NAME`.
    Whoami {
        /// Address to listen on.
        #[arg(long, env = "STICKY_LISTEN", default_value = "0.0.0.0:8000")]
        listen: SocketAddr,
        /// Name in the response body (default: the host name, i.e. a container's id).
        #[arg(long, env = "STICKY_NAME")]
        name: Option<String>,
        /// On SIGTERM: stop accepting at once, close each open connection after its next response,
        /// and exit after this long (e.g. 500ms; keep it below Swarm's --stop-grace-period).
        #[arg(long, env = "STICKY_GRACE", default_value = "500ms", value_parser = humantime::parse_duration)]
        grace: Duration,
    },
    /// Attach the packet classifier to an interface and print its counters (a diagnostic of the eBPF data path).
    Inspect {
        /// Interface to attach to.
        #[arg(long, env = "STICKY_IFACE")]
        iface: String,
        /// Attach at XDP in this mode instead of tc ingress.
        #[arg(long, env = "STICKY_XDP")]
        xdp: Option<XdpModeArg>,
        /// Seconds between two prints of the counters.
        #[arg(long, env = "STICKY_INTERVAL", default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many prints (default: until Ctrl-C).
        #[arg(long, env = "STICKY_COUNT")]
        count: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum XdpModeArg {
    /// Let the kernel choose (native if the driver supports it).
    Auto,
    /// Generic XDP (in the stack, works on any device).
    Skb,
    /// Native XDP (in the driver).
    Native,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // held until main returns: dropping it writes out the lines still queued
    let _log = telemetry::init("info");
    let runtime = match cli.command {
        // the balancer's workers run their own runtimes; this one only carries control tasks
        Command::Run(_) | Command::Demo { .. } => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
    .context("failed to start the tokio runtime")?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) if args.docker => {
            let docker = config::docker(&args).context("invalid configuration")?.context("--docker is set")?;
            let config = config::build(&args, None).context("invalid configuration")?;
            let keys = app::load_keys(config.key_file.as_deref())?;
            let grace = config.timeouts.shutdown;
            let balancer = app::start_swarm(config, keys, &docker, args.tcp.clone()).await?;
            shutdown_signal().await;
            tracing::info!(grace = ?grace, "stopping: no new connections, finishing requests in flight");
            balancer.shutdown(grace).await;
            Ok(())
        }
        Command::Run(args) if args.mode == config::RunMode::Tcp => {
            let tcp = l4::TcpArgs::from_run(&args).map_err(anyhow::Error::msg).context("invalid configuration")?;
            l4::run(tcp, shutdown_signal()).await.map_err(|e| anyhow::anyhow!(telemetry::chain(&e)))
        }
        Command::Run(args) => {
            let file = match &args.config {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("failed to read config file {}", path.display()))?,
                ),
                None => None,
            };
            let config = config::build(&args, file.as_deref()).context("invalid configuration")?;
            let keys = app::load_keys(config.key_file.as_deref())?;
            let grace = config.timeouts.shutdown;
            let balancer = app::start(config, keys).await?;
            shutdown_signal().await;
            tracing::info!(grace = ?grace, "stopping: no new connections, finishing requests in flight");
            balancer.shutdown(grace).await;
            Ok(())
        }
        Command::Demo { listen, workers } => {
            anyhow::ensure!(workers >= 1, "--workers must be at least 1");
            let demo = app::demo(listen, workers)
                .await
                .context("failed to start the demo (is the port taken? try --listen 127.0.0.1:0)")?;
            print_demo(&demo);
            shutdown_signal().await;
            Ok(())
        }
        Command::Whoami { listen, name, grace } => {
            let name = name.unwrap_or_else(whoami::default_name);
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("whoami: cannot listen on {listen}"))?;
            tracing::info!(%listen, %name, "whoami listening");
            whoami::serve_until(listener, name, shutdown_signal(), grace)
                .await
                .with_context(|| format!("whoami on {listen} failed"))
        }
        Command::Inspect { iface, xdp, interval, count } => {
            anyhow::ensure!(interval.is_finite() && interval > 0.0, "--interval must be a positive number of seconds");
            let mut datapath =
                Datapath::load(telemetry::kernel_log_level()).context("the eBPF data path is unavailable")?;
            datapath.spawn_log_drain();
            match xdp {
                None => datapath.attach_tc(&iface)?,
                Some(mode) => {
                    let mode = match mode {
                        XdpModeArg::Auto => aya::programs::XdpMode::Default,
                        XdpModeArg::Skb => aya::programs::XdpMode::Skb,
                        XdpModeArg::Native => aya::programs::XdpMode::Driver,
                    };
                    datapath.attach_xdp(&iface, mode)?;
                }
            }
            println!("attached to {iface}; counters every {interval} s (Ctrl-C to stop)");
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(interval));
            ticker.tick().await;
            let mut printed = 0u64;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown_signal() => break,
                }
                let stats = datapath.stats()?;
                let line: Vec<String> = stats.iter().map(|(c, v)| format!("{}={v}", c.name())).collect();
                println!("{}", line.join(" "));
                printed += 1;
                if count.is_some_and(|n| printed >= n) {
                    break;
                }
            }
            Ok(())
        }
    }
}

/// Prints the demo's URL and two commands that can be pasted into a shell as they are.
fn print_demo(demo: &app::Demo) {
    use std::io::Write as _;
    let url = format!("http://{}/", demo.balancer.listen);
    let jar = std::env::temp_dir().join(format!("sticky-demo-{}.cookies", demo.balancer.listen.port()));
    let jar = shell_quote(&jar.to_string_lossy());
    let backends: Vec<String> = demo.backends.iter().map(|(n, a)| format!("{n} ({a})")).collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "sticky demo: the balancer at {url} spreads sessions over {}", backends.join(", "));
    let _ = writeln!(out);
    let _ = writeln!(out, "First visit: a backend is picked and the sticky cookie is set (see Set-Cookie):");
    let _ = writeln!(out, "  curl -si -c {jar} {url}");
    let _ = writeln!(out);
    let _ = writeln!(out, "Send the cookie back: the same backend answers every time:");
    let _ = writeln!(out, "  curl -s -b {jar} {url} {url} {url}");
    let _ = writeln!(out);
    let _ = writeln!(out, "Serving until Ctrl-C.");
    let _ = out.flush();
}

/// Quotes `s` for a POSIX shell if it holds anything but safe characters.
fn shell_quote(s: &str) -> String {
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%=,".contains(&b)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Completes on SIGINT or SIGTERM.
///
/// # Cancel safety
/// Cancel safe: dropping it before completion loses nothing.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

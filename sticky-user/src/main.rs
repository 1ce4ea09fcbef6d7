//! The `sticky` command line: parse, set up logging, run one subcommand until it ends or a signal arrives.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use sticky::{datapath::Datapath, l4, telemetry, whoami};

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
    /// Run the balancer. `--mode tcp`: L4 client affinity (eBPF full NAT in the kernel, or a
    /// user-space proxy when eBPF cannot load).
    Run {
        /// Balancing mode.
        #[arg(long, env = "STICKY_MODE", value_enum, default_value_t = Mode::Http)]
        mode: Mode,
        #[command(flatten)]
        tcp: l4::TcpArgs,
    },
    /// A tiny demo app: every request gets `200 I'm NAME`.
    Whoami {
        /// Address to listen on.
        #[arg(long, env = "STICKY_LISTEN", default_value = "0.0.0.0:8000")]
        listen: SocketAddr,
        /// Name in the response body (default: the host name, i.e. a container's id).
        #[arg(long, env = "STICKY_NAME")]
        name: Option<String>,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// HTTP with signed sticky cookies.
    Http,
    /// Plain TCP with client-IP affinity (L4).
    Tcp,
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
    telemetry::init("info");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { mode: Mode::Http, .. } => {
            anyhow::bail!("--mode http is not built in this branch (tcp); use --mode tcp")
        }
        Command::Run { mode: Mode::Tcp, tcp } => {
            l4::run(tcp, shutdown_signal()).await.map_err(|e| anyhow::anyhow!(telemetry::chain(&e)))
        }
        Command::Whoami { listen, name } => {
            let name = name.unwrap_or_else(whoami::default_name);
            tokio::select! {
                r = whoami::bind_and_serve(listen, name) => r.with_context(|| format!("whoami on {listen} failed")),
                () = shutdown_signal() => Ok(()),
            }
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

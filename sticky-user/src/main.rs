//! The `sticky` command: parse the command line, set up logging and the runtime, and hand the
//! subcommand to its runner until it ends or a signal stops it.

use anyhow::Context as _;
use clap::Parser as _;
use sticky::{
    app,
    cli::{Cli, Command},
    hold, signal, telemetry, whoami,
};

// The proxy allocates little per request (the request's boxed state, a Set-Cookie line for a new pin);
// mimalloc's thread-local free lists make those, and the admin/health paths' hyper messages, cheaper
// than glibc's malloc on the one-core benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process. mimalloc asks for them on its arenas, and the kernel
/// then backs the heap in 2 MiB pages: RSS grows in 2 MiB steps, an idle connection's 512 bytes of heap
/// read as 1.4 KiB (docs/http-performance.md) and an idle process holds 12 MiB more. The `no_thp`
/// feature stops mimalloc's request; this also covers a kernel set to `always`. An error (a kernel
/// without the call) leaves things as they were.
fn without_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes only integers and touches no memory of this process's
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

fn main() -> anyhow::Result<()> {
    without_transparent_huge_pages();
    let cli = Cli::parse();
    // held until main returns: dropping it writes out the lines still queued
    let _log = telemetry::init("info");
    let runtime = match cli.command {
        // the balancer's workers run their own runtimes; this one only carries control tasks
        Command::Run(_) | Command::Demo(_) | Command::Hold(_) => {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        }
        Command::Whoami(_) | Command::Inspect(_) => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
    .context("failed to start the tokio runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Run(args) => app::run(&args, signal::shutdown()).await?,
            Command::Demo(args) => app::demo(&args, signal::shutdown())
                .await
                .context("failed to start the demo (is the port taken? try --listen 127.0.0.1:0)")?,
            Command::Whoami(args) => whoami::run(&args, signal::shutdown()).await?,
            Command::Inspect(args) => app::inspect(&args, signal::shutdown()).await?,
            Command::Hold(args) => hold::run(&args, signal::shutdown()).await?,
        }
        Ok(())
    })
}

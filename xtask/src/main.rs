//! `cargo xtask`: one clap enum, one module per subcommand.
#![deny(unsafe_code)]

mod bench;
mod demo;
mod image;
mod test;

use std::{os::unix::process::CommandExt as _, path::PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use xtask::{ebpf, setup};

/// sticky's developer entry points. Each command installs what it needs first (`setup`).
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the eBPF toolchain (Debian packages, bpf-linker) and the test tools, if missing.
    Setup {
        /// Also install the benchmark's peers and load generator (wrk, HAProxy, nginx).
        #[arg(long)]
        bench: bool,
    },
    /// Build the eBPF object (target/ebpf/bpfel-unknown-none/release/sticky) and check it carries BTF.
    BuildEbpf,
    /// Build the self-contained `sticky` binary (eBPF embedded) in release mode.
    Build,
    /// Run the demo: `sticky demo` (three whoami backends and the balancer on loopback; prints what to
    /// curl). `--kernel`: the eBPF classifier counting real traffic between two namespaces (root).
    Demo {
        /// Show the kernel classifier on a namespace topology instead.
        #[arg(long)]
        kernel: bool,
        /// Arguments passed to `sticky demo` (e.g. `--listen 127.0.0.1:9000`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: unit, property, packet (`BPF_PROG_TEST_RUN`), network-namespace and Swarm tests;
    /// then the bench's smoke run (`bench --quick`).
    Test(test::Options),
    /// Build the `FROM scratch` image (Dockerfile) from a static release binary, without any registry.
    Image(image::Options),
    /// Benchmark sticky side by side with HAProxy, nginx and iptables in network namespaces (root);
    /// writes JSON, Markdown and an SVG plot (bench/README.md explains them).
    Bench(bench::Options),
    /// The bench's probe, run by the bench itself inside its client namespace.
    #[command(hide = true)]
    BenchProbe {
        /// What to probe (JSON).
        spec: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let workspace = workspace_root();
    match cli.command {
        Command::Setup { bench } => setup::run(setup::Components { test: true, bench }),
        Command::BuildEbpf => {
            setup::run(setup::Components::default())?;
            let object = ebpf::build(&workspace)?;
            println!("{}", object.display());
            Ok(())
        }
        Command::Build => {
            setup::run(setup::Components::default())?;
            let bin = build_sticky(&workspace, true)?;
            println!("{}", bin.display());
            Ok(())
        }
        Command::Demo { kernel: true, .. } => {
            setup::run(setup::Components { test: true, bench: false })?;
            let bin = build_sticky(&workspace, true)?;
            demo::run_kernel(&bin)
        }
        Command::Demo { kernel: false, args } => {
            setup::run(setup::Components::default())?;
            let bin = build_sticky(&workspace, true)?;
            // Replace this process, so Ctrl-C reaches the demo directly.
            let err = std::process::Command::new(&bin).arg("demo").args(&args).exec();
            Err(err).with_context(|| format!("failed to run {} demo", bin.display()))
        }
        Command::Test(options) => test::run(&workspace, &options),
        Command::Image(options) => {
            // the test components bring docker.io
            setup::run(setup::Components { test: true, bench: false })?;
            image::run(&workspace, &options)
        }
        Command::Bench(options) => {
            if !options.no_setup {
                setup::run(setup::Components { test: true, bench: true })?;
            }
            let bin = match &options.sticky {
                Some(bin) => bin.clone(),
                None => build_sticky(&workspace, true)?,
            };
            bench::run(&workspace, &options, &bin)
        }
        Command::BenchProbe { spec } => bench::probe::main(&spec),
    }
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or(manifest.clone(), PathBuf::from)
}

/// Builds the `sticky` binary (its build.rs builds and embeds the eBPF object) and returns its path.
fn build_sticky(workspace: &std::path::Path, release: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--locked", "--package", "sticky-user", "--bin", "sticky"])
        .env(xtask::EMBED_EBPF.0, xtask::EMBED_EBPF.1);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().with_context(|| format!("failed to run {cmd:?}"))?;
    anyhow::ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(workspace.join("target").join(if release { "release" } else { "debug" }).join("sticky"))
}

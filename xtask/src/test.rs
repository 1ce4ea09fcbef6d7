//! `cargo xtask test`: set up, build the eBPF object and the `sticky` binary, then run every test
//! crate with cargo test, and end with one summary over all of them (and every skipped test, loudly);
//! then the bench's smoke run (`bench --quick` with the same binary).

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use xtask::{ebpf, setup};

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Skip the set-up step (installing missing packages).
    #[arg(long)]
    no_setup: bool,
    /// Skip the bench smoke run at the end (it also does not run when test arguments are given).
    #[arg(long)]
    no_bench: bool,
    /// Arguments after `--` go to every `cargo test` invocation's test binaries (e.g. a name filter).
    #[arg(last = true)]
    test_args: Vec<String>,
}

/// The crates whose tests run, in order: pure ones first, so a broken codec fails fast.
const PACKAGES: &[&str] = &["sticky-common", "sticky-testkit", "xtask", "sticky-user", "sticky-tests"];

pub fn run(workspace: &Path, options: &Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if !options.no_setup {
        step("setup", || setup::run(setup::Components { test: true, bench: true }))?;
    }
    step("build-ebpf", || ebpf::build(workspace).map(drop))?;

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Everything builds for the explicit host triple with a static C runtime: the same `sticky`
    // binary then runs on the host, in namespaces, and in a `FROM scratch` image for the Swarm
    // tests, with one compilation. (With an explicit --target, build scripts and proc macros stay
    // dynamic, as they must.)
    let triple = xtask::host_triple()?;
    let static_flags = (
        format!("CARGO_TARGET_{}_RUSTFLAGS", triple.to_uppercase().replace('-', "_")),
        "-C target-feature=+crt-static",
    );
    step("build sticky", || {
        let status = Command::new(&cargo)
            .current_dir(workspace)
            .args(["build", "--locked", "--package", "sticky-user", "--bin", "sticky", "--target", &triple])
            .env(&static_flags.0, static_flags.1)
            .env(xtask::EMBED_EBPF.0, xtask::EMBED_EBPF.1)
            .status()
            .context("failed to run cargo build")?;
        anyhow::ensure!(status.success(), "cargo build failed ({status})");
        Ok(())
    })?;

    let skip_log = workspace.join("target/skipped-tests.log");
    let _ = std::fs::remove_file(&skip_log);
    let mut totals = Totals::default();
    let test_started = Instant::now();
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace).args(["test", "--locked", "--no-fail-fast", "--target", &triple]);
    for p in PACKAGES {
        cmd.args(["--package", p]);
    }
    cmd.arg("--").args(&options.test_args);
    cmd.env(&static_flags.0, static_flags.1)
        .env(xtask::EMBED_EBPF.0, xtask::EMBED_EBPF.1)
        .env("STICKY_BIN", workspace.join("target").join(&triple).join("debug/sticky"))
        .env("STICKY_SKIP_LOG", &skip_log)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped());
    if ci {
        // In CI every test must really run: a skip is a failure there (the machine has root, the
        // kernel features and Docker; a skip would mean the environment silently regressed).
        cmd.env("STICKY_REQUIRE_ALL", "1");
    }
    eprintln!("==> {cmd:?}");
    let mut child = cmd.spawn().context("failed to run cargo test")?;
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("failed to read cargo test's output")?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait().context("failed to wait for cargo test")?;
    let test_secs = test_started.elapsed().as_secs_f64();

    let skipped: Vec<String> =
        std::fs::read_to_string(&skip_log).unwrap_or_default().lines().map(str::to_owned).collect();
    println!();
    println!("==================== sticky test summary ====================");
    println!(
        "{} test binaries: {} passed, {} failed, {} ignored; skipped (inside tests): {}",
        totals.binaries,
        totals.passed,
        totals.failed,
        totals.ignored,
        skipped.len()
    );
    for s in &skipped {
        println!("  SKIPPED {s}");
    }
    println!("cargo test: {test_secs:.0} s; whole run: {:.0} s", started.elapsed().as_secs_f64());
    println!("=============================================================");
    if !status.success() || totals.failed > 0 {
        bail!("tests failed");
    }
    if totals.binaries == 0 {
        bail!("no test binary ran");
    }
    if options.no_bench || !options.test_args.is_empty() {
        println!("bench smoke: skipped ({})", if options.no_bench { "--no-bench" } else { "test arguments given" });
        return Ok(());
    }
    bench_smoke(workspace, &workspace.join("target").join(&triple).join("debug/sticky"))
}

/// `cargo xtask bench --quick` with the test build of sticky: every configuration must serve and pin
/// correctly; no figure is judged (a debug build on a shared machine measures nothing).
fn bench_smoke(workspace: &Path, sticky: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    println!();
    println!("==================== bench smoke: cargo xtask bench --quick ====================");
    println!("(checks that every configuration serves and pins; the figures of this debug build mean nothing)");
    let out = workspace.join("target/bench/smoke");
    let _ = std::fs::remove_dir_all(&out);
    let result = crate::bench::run(workspace, &crate::bench::Options::smoke(out), sticky);
    println!(
        "==================== bench smoke: {} in {:.0} s ====================",
        if result.is_ok() { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    result.context("the bench smoke run failed")
}

fn step(name: &str, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let started = Instant::now();
    eprintln!("==> {name}");
    f().with_context(|| format!("step {name} failed"))?;
    eprintln!("==> {name}: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Sums of cargo test's per-binary `test result:` lines.
#[derive(Debug, Default)]
struct Totals {
    binaries: u32,
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Adds one line of cargo test output if it is a `test result:` line.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        self.binaries += 1;
        for part in rest.split(';') {
            let mut words = part.split_whitespace().filter(|w| *w != "ok." && *w != "FAILED.");
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn sums_cargo_test_result_lines() {
        let mut t = Totals::default();
        t.add("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        t.add("running 3 tests");
        t.add("test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s");
        assert_eq!((t.binaries, t.passed, t.failed, t.ignored), (2, 14, 1, 1));
    }
}

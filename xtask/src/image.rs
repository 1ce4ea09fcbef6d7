//! `cargo xtask image`: the `FROM scratch` image of sticky (Dockerfile at the workspace root), built
//! from a static release binary without any registry.

use std::{path::Path, process::Command};

use anyhow::Context as _;

/// Options of `cargo xtask image`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Image tag.
    #[arg(long, default_value = "sticky:latest")]
    tag: String,
}

/// Builds the static binary (eBPF embedded), copies it alone into a build context, and runs the
/// legacy builder on the workspace's Dockerfile (BuildKit would look up `scratch`'s metadata online).
///
/// # Errors
/// The build or `docker build` fails.
pub fn run(workspace: &Path, options: &Options) -> anyhow::Result<()> {
    let triple = xtask::host_triple()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let rustflags = format!("CARGO_TARGET_{}_RUSTFLAGS", triple.to_uppercase().replace('-', "_"));
    let mut build = Command::new(&cargo);
    build
        .current_dir(workspace)
        .args(["build", "--release", "--locked", "--package", "sticky-user", "--bin", "sticky", "--target", &triple])
        // no debug info in the image (47 MB with it); symbols stay, so a panic's backtrace names functions
        .env(&rustflags, "-C target-feature=+crt-static")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        .env(xtask::EMBED_EBPF.0, xtask::EMBED_EBPF.1);
    let status = build.status().with_context(|| format!("failed to run {build:?}"))?;
    anyhow::ensure!(status.success(), "{build:?} failed ({status})");

    let context = workspace.join("target/image");
    std::fs::create_dir_all(&context).with_context(|| format!("failed to create {}", context.display()))?;
    let binary = workspace.join("target").join(&triple).join("release/sticky");
    std::fs::copy(&binary, context.join("sticky")).with_context(|| format!("failed to copy {}", binary.display()))?;
    let mut docker = Command::new("docker");
    docker
        .arg("build")
        .arg("-f")
        .arg(workspace.join("Dockerfile"))
        .args(["-t", &options.tag])
        .arg(&context)
        .env("DOCKER_BUILDKIT", "0");
    let status = docker.status().with_context(|| format!("failed to run {docker:?} (is docker.io installed?)"))?;
    anyhow::ensure!(status.success(), "{docker:?} failed ({status})");
    println!("{}", options.tag);
    Ok(())
}

//! A private Docker Swarm for one test: its own dockerd (data and exec roots in a temporary directory,
//! its own socket), `docker swarm init` on 127.0.0.1, images built `FROM scratch` with the static
//! `sticky` binary, and everything removed on drop (services, containers, mounts, links, files).
//!
//! One dockerd at a time (Docker's bridge and ingress names are global to the host), so every Swarm
//! test holds [`Swarm`], which holds a process-wide lock. The daemon runs with
//! `DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1` and services are created with `--no-resolve-image`: no
//! registry is ever contacted for an image that exists locally (the machine has no registry).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use testkit::{ChildGuard, wait};

static ONE_DOCKERD: Mutex<()> = Mutex::new(());

/// The machine-wide half of "one dockerd at a time": an exclusive `flock` on a file in /tmp, held
/// while a Swarm runs, so two test processes (two checkouts tested at once) take turns instead of
/// colliding on Docker's bridges. The kernel drops it when the process dies, even by SIGKILL.
struct HostLock(#[expect(dead_code, reason = "held for its descriptor: closing it releases the lock")] std::fs::File);

impl HostLock {
    fn acquire() -> Self {
        use std::os::fd::AsRawFd as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/sticky-swarm.lock")
            .expect("/tmp must be writable");
        // SAFETY: flock on a descriptor this function owns; it blocks until the lock is free.
        #[expect(unsafe_code, reason = "flock: no std API for advisory locks on 1.87")]
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert!(rc == 0, "flock /tmp/sticky-swarm.lock: {}", std::io::Error::last_os_error());
        Self(file)
    }
}

/// A running private Swarm; dropping it tears everything down.
pub struct Swarm {
    dir: PathBuf,
    socket: PathBuf,
    dockerd: Option<ChildGuard>,
    /// Docker's VXLAN devices in the host namespace before this dockerd started (see [`teardown`]).
    vxlans_before: Vec<String>,
    _lock: MutexGuard<'static, ()>,
    // Declared after everything torn down in Drop: released last.
    _host_lock: HostLock,
}

impl std::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Whether dockerd and the docker CLI are installed.
#[must_use]
pub fn docker_available() -> bool {
    Path::new("/usr/sbin/dockerd").exists() || which("dockerd").is_some()
}

/// Whether `binary` is statically linked (an ELF without a program interpreter), as a `FROM scratch`
/// image needs.
#[must_use]
pub fn is_static(binary: &Path) -> bool {
    use object::{Object as _, ObjectSection as _};
    let Ok(bytes) = std::fs::read(binary) else { return false };
    let Ok(file) = object::File::parse(&*bytes) else { return false };
    file.section_by_name(".interp").is_none_or(|s| s.size() == 0)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(program)).find(|p| p.is_file()))
}

impl Swarm {
    /// Starts dockerd and initializes a single-node Swarm.
    ///
    /// # Panics
    /// dockerd does not come up within 30 s or `swarm init` fails (the message carries dockerd's log tail).
    #[must_use]
    pub fn start() -> Self {
        let lock = ONE_DOCKERD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let host_lock = HostLock::acquire();
        // A previous run killed with SIGKILL leaves its dockerd behind: its bridge would collide.
        sweep_stale();
        let dir = PathBuf::from(format!("/tmp/sticky-swarm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("create the dockerd data root");
        let socket = dir.join("docker.sock");
        let vxlans_before = host_vxlans();
        let mut swarm = Self { dir, socket, dockerd: None, vxlans_before, _lock: lock, _host_lock: host_lock };
        swarm.start_dockerd();
        let out = swarm.docker_output(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        assert!(out.status.success(), "docker swarm init failed: {}\n{}", stderr(&out), swarm.log_tail());
        swarm
    }

    /// The daemon's socket (`unix://...` for `DOCKER_HOST`).
    #[must_use]
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The socket's path on the host.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The directory holding the socket: mount this (not the socket file) into a container that must
    /// survive a dockerd restart, since a restart replaces the socket file.
    #[must_use]
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The dockerd command line for this Swarm's roots and socket, logging to `log`.
    fn dockerd_command(&self, log: std::fs::File) -> Command {
        let mut cmd = Command::new("dockerd");
        cmd.arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pid"))
            .arg("-H")
            .arg(self.docker_host())
            // No default bridge and no iptables rules: Swarm tasks use overlays and docker_gwbridge,
            // and published ports (mode=host) go through docker-proxy.
            .args(["--bridge", "none", "--iptables=false"])
            .env("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE", "1")
            .stdout(Stdio::null())
            .stderr(log);
        cmd
    }

    fn start_dockerd(&mut self) {
        let log = std::fs::File::create(self.dir.join("dockerd.log")).expect("create dockerd.log");
        let mut cmd = self.dockerd_command(log);
        self.dockerd = Some(ChildGuard::spawn(&mut cmd));
        let up = wait::until(Duration::from_secs(30), || self.docker_output(&["version"]).status.success());
        assert!(up, "dockerd did not come up in 30 s:\n{}", self.log_tail());
    }

    /// `docker <args>` against this daemon; panics with its stderr when it fails.
    ///
    /// # Panics
    /// The command fails.
    #[expect(
        clippy::must_use_candidate,
        reason = "tests run docker commands for their effect (rm, scale, kill) as often as for their output"
    )]
    pub fn docker(&self, args: &[&str]) -> String {
        let out = self.docker_output(args);
        assert!(out.status.success(), "docker {} failed: {}", args.join(" "), stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `docker <args>` against this daemon, whatever its outcome.
    ///
    /// # Panics
    /// The `docker` command cannot be started.
    #[must_use]
    pub fn docker_output(&self, args: &[&str]) -> Output {
        self.docker_command(args).output().unwrap_or_else(|e| panic!("docker {}: {e}", args.join(" ")))
    }

    /// A `docker <args>` command against this daemon, to add env or stdin.
    #[must_use]
    pub fn docker_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.args(args).env("DOCKER_HOST", self.docker_host()).env("DOCKER_CLI_HINTS", "false").stdin(Stdio::null());
        cmd
    }

    /// Builds an image from the workspace's `Dockerfile` (`FROM scratch`, `/sticky` as the entry
    /// point) with `binary` as its only content, the way `cargo xtask image` does.
    ///
    /// # Panics
    /// The build fails.
    pub fn build_image(&self, tag: &str, binary: &Path) {
        let ctx = self.dir.join(format!("image-{}", tag.replace([':', '/'], "-")));
        std::fs::create_dir_all(&ctx).expect("create the build context");
        std::fs::copy(binary, ctx.join("sticky")).unwrap_or_else(|e| panic!("copy {}: {e}", binary.display()));
        // Debug info is most of a test build's size; the image does not need it.
        let _ = Command::new("strip").arg(ctx.join("sticky")).output();
        let dockerfile = workspace_file("Dockerfile");
        let out = self
            .docker_command(&[
                "build",
                "-q",
                "-f",
                dockerfile.to_str().expect("utf-8 path"),
                "-t",
                tag,
                ctx.to_str().expect("utf-8 path"),
            ])
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .expect("run docker build");
        assert!(out.status.success(), "docker build {tag} failed: {}", stderr(&out));
    }

    /// `docker stack deploy --resolve-image never -c FILE NAME` with `env` for the file's variables.
    ///
    /// # Panics
    /// The deploy fails.
    pub fn deploy_stack(&self, name: &str, file: &Path, env: &[(&str, String)]) {
        let mut cmd = self.docker_command(&[
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            file.to_str().expect("utf-8 path"),
            name,
        ]);
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let out = cmd.output().expect("run docker stack deploy");
        assert!(out.status.success(), "docker stack deploy {name} failed: {}", stderr(&out));
    }

    /// Waits until `service` has exactly `n` tasks running with desired state running.
    ///
    /// # Panics
    /// Not converged within `timeout` (the message lists the tasks).
    pub fn wait_running(&self, service: &str, n: usize, timeout: Duration) {
        let converged = wait::until(timeout, || self.running_tasks(service).len() == n);
        assert!(
            converged,
            "service {service} did not reach {n} running tasks in {timeout:?}:\n{}",
            self.docker(&["service", "ps", "--no-trunc", service])
        );
    }

    /// IDs of the tasks of `service` that run and should.
    #[must_use]
    pub fn running_tasks(&self, service: &str) -> Vec<String> {
        let out = self.docker_output(&[
            "service",
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.ID}} {{.CurrentState}}",
            service,
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Running"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    }

    /// Kills dockerd with SIGKILL (a crash): containers keep running, docker-proxy dies with it.
    pub fn kill_dockerd(&mut self) {
        drop(self.dockerd.take());
    }

    /// Starts dockerd again on the same data root (Swarm then restarts its tasks).
    pub fn restart_dockerd(&mut self) {
        if self.dockerd.is_none() {
            self.start_dockerd();
        }
    }

    /// Sends a signal to dockerd (e.g. SIGSTOP/SIGCONT to make its API hang and come back).
    ///
    /// # Panics
    /// dockerd has exited.
    pub fn signal_dockerd(&self, signal: i32) {
        if let Some(d) = &self.dockerd {
            d.signal(signal).unwrap_or_else(|e| panic!("signal {signal} must reach dockerd: {e}"));
        }
    }

    /// The last lines of dockerd's log.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The address of a task's container on `docker_gwbridge` (local to this host, created by this
    /// test's dockerd), for reaching a task directly while docker-proxy is down. `container` is a
    /// container id or its prefix. (A Swarm task's gateway endpoint is not in the container's own
    /// `NetworkSettings`; the bridge network lists it.)
    #[must_use]
    pub fn gwbridge_addr(&self, container: &str) -> Option<String> {
        let out = self.docker_output(&[
            "network",
            "inspect",
            "--format",
            "{{range $id, $c := .Containers}}{{$id}} {{$c.IPv4Address}}\n{{end}}",
            "docker_gwbridge",
        ]);
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let (id, cidr) = l.split_once(' ')?;
            id.starts_with(container).then(|| cidr.split('/').next().unwrap_or_default().to_owned())
        })
    }

    /// The running containers of `service`'s tasks: (task id, container id).
    #[must_use]
    pub fn task_containers(&self, service: &str) -> Vec<(String, String)> {
        self.running_tasks(service)
            .into_iter()
            .filter_map(|task| {
                let out =
                    self.docker_output(&["inspect", "--format", "{{.Status.ContainerStatus.ContainerID}}", &task]);
                let container = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                (out.status.success() && !container.is_empty()).then_some((task, container))
            })
            .collect()
    }

    /// Everything `service` logged (stdout and stderr of all its tasks, old ones included).
    #[must_use]
    pub fn service_logs(&self, service: &str) -> String {
        let out = self.docker_output(&["service", "logs", "--raw", "--no-trunc", service]);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if self.dockerd.is_none() {
            // Killed by the test: start it again only to shut it down cleanly.
            let log = std::fs::File::create(self.dir.join("dockerd-cleanup.log")).ok();
            if let Some(log) = log {
                let mut cmd = self.dockerd_command(log);
                self.dockerd = Some(ChildGuard::spawn(&mut cmd));
                let _ = wait::until(Duration::from_secs(20), || self.docker_output(&["version"]).status.success());
            }
        }
        let _ = self.docker_output(&["swarm", "leave", "--force"]);
        let ids = self.docker_output(&["ps", "-aq"]);
        let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout).split_whitespace().map(str::to_owned).collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = self.docker_output(&args);
        }
        if let Some(mut d) = self.dockerd.take() {
            // SIGTERM first, so dockerd unmounts and stops containerd.
            d.stop(Duration::from_secs(15));
        }
        teardown(&self.dir, &self.vxlans_before);
    }
}

/// Removes what a dockerd rooted in `dir` leaves behind: shims, mounts, the gateway bridge, Docker
/// VXLAN devices not in `keep`, files.
///
/// The overlay driver creates each VXLAN device (`vx-<VNI>-<network id>`) in the host namespace and
/// then moves it into the overlay's sandbox. A dockerd killed or restarted at the wrong moment
/// leaves one behind in the host namespace, and the kernel then refuses every later overlay with the
/// same VNI and port ("error creating vxlan interface: file exists"): the next Swarm's tasks are
/// rejected forever. So teardown deletes the ones this dockerd left.
fn teardown(dir: &Path, keep: &[String]) {
    kill_processes_mentioning(&dir.to_string_lossy());
    // dockerd bind-mounts its data root and the network namespaces under its exec root: unmount
    // every mount point below `dir`, deepest first.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<&str> =
        mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|p| p.starts_with(prefix.as_str())).collect();
    points.sort_unstable_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").args(["-l", point]).output();
    }
    let _ = Command::new("ip").args(["link", "del", "docker_gwbridge"]).output();
    for vxlan in host_vxlans().into_iter().filter(|v| !keep.contains(v)) {
        eprintln!("swarm teardown: deleting {vxlan}, a VXLAN device dockerd left in the host namespace");
        let _ = Command::new("ip").args(["link", "del", &vxlan]).output();
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        eprintln!("swarm teardown: remove {}: {e}", dir.display());
    }
}

/// SIGKILLs every process whose command line mentions `needle` (dockerd, containerd, shims).
fn kill_processes_mentioning(needle: &str) {
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if pid == std::process::id() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            let _ = testkit::process::signal(pid, libc::SIGKILL);
        }
    }
}

/// Tears down Swarms of test processes that no longer exist.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/tmp") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("sticky-swarm-").and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            // Docker's VXLAN devices never stay in the host namespace on purpose: a dead run's are garbage.
            teardown(&entry.path(), &[]);
        }
    }
}

/// Docker's VXLAN devices (`vx-...`) in the host network namespace.
fn host_vxlans() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link", "show", "type", "vxlan"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    // `922: vx-001001-sppop: <BROADCAST,...> ...`
    text.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.starts_with("vx-"))
        .collect()
}

/// A file of the workspace (the repository root), e.g. `deploy/stack.yml`.
#[must_use]
pub fn workspace_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

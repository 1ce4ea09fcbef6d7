//! The bench's network: client, balancer and backend namespaces joined by veth pairs, RFC 2544
//! benchmark addresses, no default route anywhere; processes inside them; all removed on drop.
//!
//! ```text
//!  client ns                 balancer ns                          backend ns
//!  c0 198.18.1.1/24  <->  l1 198.18.1.2/24   l2 198.18.2.1/24  <->  s0 198.18.2.2/24
//!  (+ 198.18.1.64-127)       lo: VIP 198.19.0.100/32                nginx: b1 :8081, b2 :8082, ...
//! ```
//! The client reaches 198.18.2.0/24 and the VIP through the balancer namespace, which forwards;
//! the backends reach the client networks through it too. Nothing else is routed.

use std::{
    net::Ipv4Addr,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// Extra client addresses for the flow-memory measurement (many clients, see `memory.rs`).
pub const CLIENT_EXTRA: std::ops::RangeInclusive<u8> = 64..=127;
/// The host of every backend (one nginx, one port per backend).
pub const BACKEND_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
/// The service address every balancer serves on port 80 (on the balancer's `lo` for the user-space ones).
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 100);
/// Port of the service on the VIP.
pub const VIP_PORT: u16 = 80;
/// Backend `bN` listens on `BACKEND_HOST:BACKEND_PORT0 + N`.
pub const BACKEND_PORT0: u16 = 8080;

/// The balancer's interfaces, towards the client and towards the backends.
pub const LB_IFACES: [&str; 2] = ["l1", "l2"];

/// Prefix of the namespaces; `<prefix><pid><role>`. Not `stk` (the tests' sweep owns that prefix).
const PREFIX: &str = "stbench";

/// The CPU of the balancer (its process, and the kernel receive path of its namespace).
pub const LB_CPU: u32 = 1;
/// The CPU of wrk, the probes and the backends (and their namespaces' receive path).
pub const LOAD_CPU: u32 = 0;

/// Backend `n` (1-based): its name, which is also its whole response body without the newline.
#[must_use]
pub fn backend_name(n: u16) -> String {
    format!("b{n}")
}

/// Backend `n`'s address.
#[must_use]
pub fn backend_addr(n: u16) -> std::net::SocketAddrV4 {
    std::net::SocketAddrV4::new(BACKEND_HOST, BACKEND_PORT0 + n)
}

/// The three namespaces; deleted (with every process still inside) on drop.
#[derive(Debug)]
pub struct Topology {
    /// Client namespace (wrk, probes).
    pub cli: String,
    /// Balancer namespace (the configuration under test).
    pub lb: String,
    /// Backend namespace (nginx).
    pub srv: String,
    created: Vec<String>,
}

impl Topology {
    /// Creates the namespaces, links, addresses and routes. With `steer`, each namespace's receive
    /// processing goes to its CPU (RPS): the balancer namespace's to [`LB_CPU`], the others' to
    /// [`LOAD_CPU`]; without, it runs on the CPU of the sender (veth delivers in the sender's softirq).
    ///
    /// # Errors
    /// An `ip` or `sysctl` command fails (not root, iproute2 missing).
    pub fn build(steer: bool) -> anyhow::Result<Self> {
        sweep_stale();
        let pid = std::process::id();
        let name = |role: &str| format!("{PREFIX}{pid}{role}");
        let mut topo = Self { cli: name("cli"), lb: name("lb"), srv: name("srv"), created: Vec::new() };
        for ns in [topo.cli.clone(), topo.lb.clone(), topo.srv.clone()] {
            run(Command::new("ip").args(["netns", "add", &ns]))?;
            topo.created.push(ns.clone());
            topo.sysctl(&ns, "net.ipv6.conf.all.disable_ipv6", "1")?;
            topo.sysctl(&ns, "net.ipv6.conf.default.disable_ipv6", "1")?;
            topo.ip(&ns, &["link", "set", "lo", "up"])?;
        }
        let (cli, lb, srv) = (topo.cli.clone(), topo.lb.clone(), topo.srv.clone());
        topo.ip(&cli, &["link", "add", "c0", "type", "veth", "peer", "name", "l1", "netns", &lb])?;
        topo.ip(&lb, &["link", "add", "l2", "type", "veth", "peer", "name", "s0", "netns", &srv])?;
        for (ns, dev, addr) in [
            (&cli, "c0", "198.18.1.1/24"),
            (&lb, "l1", "198.18.1.2/24"),
            (&lb, "l2", "198.18.2.1/24"),
            (&srv, "s0", "198.18.2.2/24"),
        ] {
            topo.ip(ns, &["addr", "add", addr, "dev", dev])?;
            topo.ip(ns, &["link", "set", dev, "up"])?;
        }
        for host in CLIENT_EXTRA {
            topo.ip(&cli, &["addr", "add", &format!("198.18.1.{host}/24"), "dev", "c0"])?;
        }
        topo.ip(&lb, &["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
        topo.ip(&cli, &["route", "add", "198.18.2.0/24", "via", "198.18.1.2"])?;
        topo.ip(&cli, &["route", "add", "198.19.0.0/24", "via", "198.18.1.2"])?;
        topo.ip(&srv, &["route", "add", "198.18.1.0/24", "via", "198.18.2.1"])?;
        topo.sysctl(&lb, "net.ipv4.ip_forward", "1")?;
        // Many short-lived connections in the probes: reuse TIME_WAIT ports towards the same peer.
        topo.sysctl(&cli, "net.ipv4.tcp_tw_reuse", "1")?;
        for (ns, dev, cpu) in [(&cli, "c0", LOAD_CPU), (&lb, "l1", LB_CPU), (&lb, "l2", LB_CPU), (&srv, "s0", LOAD_CPU)]
            .into_iter()
            .filter(|_| steer)
        {
            let mask = format!("{:x}", 1u32 << cpu);
            let path = format!("/sys/class/net/{dev}/queues/rx-0/rps_cpus");
            run(topo.exec(ns, "sh").args(["-c", &format!("echo {mask} > {path}")]))?;
        }
        Ok(topo)
    }

    /// A command running `program` inside namespace `ns` (`ip netns exec`, which execs: the child's
    /// pid is the program's).
    #[must_use]
    pub fn exec(&self, ns: &str, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, program]);
        cmd
    }

    /// A command running `program` inside `ns`, pinned to `cpu`, with its open-file limit raised to
    /// the hard limit (`prlimit`, then `taskset`, both exec).
    #[must_use]
    pub fn pinned(&self, ns: &str, cpu: u32, program: &Path) -> Command {
        let mut cmd = self.exec(ns, "prlimit");
        let limit = fd_limit();
        cmd.arg(format!("--nofile={limit}:{limit}")).args(["taskset", "-c", &cpu.to_string()]).arg(program);
        cmd
    }

    /// `ip -n <ns> <args>`.
    ///
    /// # Errors
    /// The command fails.
    pub fn ip(&self, ns: &str, args: &[&str]) -> anyhow::Result<()> {
        run(Command::new("ip").arg("-n").arg(ns).args(args)).map(drop)
    }

    /// Sets a sysctl inside `ns`.
    ///
    /// # Errors
    /// The command fails.
    pub fn sysctl(&self, ns: &str, key: &str, value: &str) -> anyhow::Result<()> {
        run(self.exec(ns, "sysctl").args(["-qw", &format!("{key}={value}")])).map(drop)
    }

    /// The pids of every process inside `ns`.
    #[must_use]
    pub fn pids(&self, ns: &str) -> Vec<u32> {
        let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            kill_all_inside(ns);
            // Deleting the namespace also removes its iptables rules, routes and links.
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// The hard limit of open files (this process's; without CAP_SYS_RESOURCE nothing can go above it).
#[must_use]
pub fn fd_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Max open files"))
                .and_then(|l| l.split_whitespace().nth(1).map(|h| h.parse().unwrap_or(1 << 20)))
        })
        .unwrap_or(1024)
}

/// Removes namespaces left by a bench whose process no longer exists (killed with SIGKILL).
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() || Path::new(&format!("/proc/{digits}")).exists() {
            continue;
        }
        eprintln!("bench: removing stale namespace {name}");
        kill_all_inside(name);
        let _ = Command::new("ip").args(["netns", "del", name]).output();
    }
}

/// SIGTERM to every process in `ns`, then SIGKILL to those still there after a second.
fn kill_all_inside(ns: &str) {
    let pids = |ns: &str| -> Vec<String> {
        Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    for signal in ["-TERM", "-KILL"] {
        let list = pids(ns);
        if list.is_empty() {
            return;
        }
        let _ = Command::new("kill").arg(signal).args(&list).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && !pids(ns).is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A process of the bench: SIGTERM on drop, SIGKILL if it has not exited within 3 s.
#[derive(Debug)]
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
}

impl Proc {
    /// Spawns `cmd` with stdout/stderr into `log` (appended).
    ///
    /// # Errors
    /// The log cannot be opened or the command cannot start.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("failed to open {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("failed to start {name}: {cmd:?}"))?;
        Ok(Self { name: name.to_owned(), child })
    }

    /// Wraps an already spawned child.
    #[must_use]
    pub fn from_child(name: &str, child: Child) -> Self {
        Self { name: name.to_owned(), child }
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child, for its pipes.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Fails if the process has exited.
    ///
    /// # Errors
    /// It has exited (the message has its status).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("{} exited ({status})", self.name),
            None => Ok(()),
        }
    }

    /// Stops the process (SIGTERM, then SIGKILL after 3 s) and waits for it.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `cmd` to completion.
///
/// # Errors
/// It cannot start or exits non-zero (the message has its stderr).
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("failed to run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

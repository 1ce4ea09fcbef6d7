//! One RAII guard per network namespace: created with `ip netns add`, commands and closures run
//! inside it, deleted (with every process still inside it) on drop, also while a failing test unwinds;
//! and the sweep of namespaces that a run killed with SIGKILL left behind.

use std::{
    collections::BTreeSet,
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use crate::{
    causes,
    process::{self, ProcessError},
    wait,
};

/// A namespace command that failed, or a reading inside a namespace that made no sense.
#[derive(Debug, thiserror::Error)]
pub enum NetNsError {
    /// An `ip` or `sysctl` command failed (not root, iproute2 missing, a name taken).
    #[error("in network namespace {ns}")]
    Command {
        /// The namespace.
        ns: String,
        /// The command's failure.
        #[source]
        source: ProcessError,
    },
    /// A value read inside the namespace does not parse.
    #[error("network namespace {ns}: no {what} in {text:?}")]
    Reading {
        /// The namespace.
        ns: String,
        /// What was looked for.
        what: String,
        /// What was read instead.
        text: String,
    },
}

/// How one harness names its namespaces: a prefix it owns (its stale sweep matches on it), then the
/// pid of the process that created them, so a sweep can tell the dead runs' namespaces from live ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// `<prefix><pid>x<n><role>`: unique within the process (tests build many topologies at once).
    Unique(&'static str),
    /// `<prefix><pid><role>`: one namespace per role and process (the bench's fixed set).
    PerProcess(&'static str),
}

impl Naming {
    /// The tests' namespaces: `stk<pid>x<n><role>`.
    pub const TESTS: Self = Self::Unique("stk");

    /// The prefix this naming owns.
    #[must_use]
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Unique(p) | Self::PerProcess(p) => p,
        }
    }

    /// The name of a new namespace for `role`.
    #[must_use]
    pub fn name(self, role: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        match self {
            Self::Unique(p) => format!("{p}{pid}x{}{role}", COUNTER.fetch_add(1, Ordering::Relaxed)),
            Self::PerProcess(p) => format!("{p}{pid}{role}"),
        }
    }
}

/// The pid in a namespace name of this naming (`<prefix><pid>...`), if the name is one.
fn owner(prefix: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let digits = &rest[..rest.bytes().take_while(u8::is_ascii_digit).count()];
    digits.parse().ok()
}

/// A named network namespace (`/run/netns/<name>`), removed on drop with every process inside it.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    grace: Option<Duration>,
}

impl NetNs {
    /// A test namespace (`stk<pid>x<n><role>`, see [`NetNs::try_create`]).
    ///
    /// # Panics
    /// `ip netns add` fails (not root, or iproute2 missing).
    #[must_use]
    pub fn new(role: &str) -> Self {
        Self::try_create(Naming::TESTS, role).unwrap_or_else(|e| panic!("{e}: {}", causes(&e)))
    }

    /// Creates a namespace named by `naming` for `role`, with `lo` up, IPv6 off (so no router
    /// solicitations or DAD traffic disturb packet counts), IPv4 forwarding off, and no routes at all.
    /// The first namespace of a naming in this process first sweeps the stale ones of dead processes.
    ///
    /// Forwarding is set, not inherited: a new namespace copies the IPv4 settings of the host's
    /// (`net.core.devconf_inherit_init_net` = 0), and the host's `ip_forward` flips to 1 the moment
    /// a test starts dockerd. A namespace that needs it (a balancer, the packet lab) turns it on.
    ///
    /// # Errors
    /// An `ip` or `sysctl` command fails; a namespace created already is deleted again.
    pub fn try_create(naming: Naming, role: &str) -> Result<Self, NetNsError> {
        static SWEPT: Mutex<BTreeSet<&str>> = Mutex::new(BTreeSet::new());
        if SWEPT.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(naming.prefix()) {
            sweep_stale(naming.prefix());
        }
        let name = naming.name(role);
        process::run(Command::new("ip").args(["netns", "add", &name]))
            .map_err(|source| NetNsError::Command { ns: name.clone(), source })?;
        let ns = Self { name, grace: None };
        for key in ["all", "default"] {
            ns.try_sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6"), "1")?;
        }
        ns.try_sysctl("net.ipv4.ip_forward", "0")?;
        ns.try_ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// On drop, SIGTERM the processes inside first and SIGKILL only those still there after `grace`.
    #[must_use]
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// The namespace's name, as `ip netns` knows it.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args>`.
    ///
    /// # Panics
    /// The command fails; the message carries its stderr.
    pub fn ip(&self, args: &[&str]) {
        self.try_ip(args).unwrap_or_else(|e| panic!("{e}: {}", causes(&e)));
    }

    /// `ip -n <ns> <args>`.
    ///
    /// # Errors
    /// The command fails (the error carries its stderr).
    pub fn try_ip(&self, args: &[&str]) -> Result<(), NetNsError> {
        self.checked(Command::new("ip").arg("-n").arg(&self.name).args(args)).map(drop)
    }

    /// Sets a sysctl inside the namespace.
    ///
    /// # Panics
    /// The command fails.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.try_sysctl(key, value).unwrap_or_else(|e| panic!("{e}: {}", causes(&e)));
    }

    /// Sets a sysctl inside the namespace.
    ///
    /// # Errors
    /// The command fails.
    pub fn try_sysctl(&self, key: &str, value: &str) -> Result<(), NetNsError> {
        self.checked(self.command("sysctl").args(["-qw", &format!("{key}={value}")])).map(drop)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`, which execs: the child's
    /// pid is the program's).
    #[must_use]
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args` inside the namespace and returns its stdout.
    ///
    /// # Panics
    /// The command fails.
    #[must_use]
    pub fn output(&self, program: &str, args: &[&str]) -> String {
        self.try_output(program, args).unwrap_or_else(|e| panic!("{e}: {}", causes(&e)))
    }

    /// Runs `program args` inside the namespace and returns its stdout.
    ///
    /// # Errors
    /// The command fails.
    pub fn try_output(&self, program: &str, args: &[&str]) -> Result<String, NetNsError> {
        let out = self.checked(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The pids of every process inside the namespace.
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        pids(&self.name)
    }

    /// Runs `f` on a fresh thread that has entered this namespace, and returns its result.
    ///
    /// setns is per thread, so the caller's thread never changes namespace; sockets and BPF links
    /// created inside `f` belong to this namespace. A panic inside `f` is re-raised here.
    ///
    /// # Panics
    /// Entering the namespace fails, or `f` panics.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                enter(&file, &path);
                f()
            })
            .join()
            .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
        })
    }

    /// A counter of an interface in this namespace (`/sys/class/net/<iface>/statistics/<name>`),
    /// read through `ip netns exec`, which mounts the namespace's own sysfs.
    ///
    /// # Panics
    /// The interface or counter does not exist.
    #[must_use]
    pub fn iface_counter(&self, iface: &str, name: &str) -> u64 {
        let out = self.output("cat", &[&format!("/sys/class/net/{iface}/statistics/{name}")]);
        out.trim().parse().unwrap_or_else(|e| panic!("netns {}: {iface} {name}: {out:?}: {e}", self.name))
    }

    /// A value of `/proc/net/snmp` in this namespace, e.g. `("Tcp", "InSegs")`.
    ///
    /// # Panics
    /// The table or field does not exist.
    #[must_use]
    pub fn snmp(&self, table: &str, field: &str) -> u64 {
        let text = self.output("cat", &["/proc/net/snmp"]);
        snmp_value(&text, table, field).unwrap_or_else(|| {
            let e = NetNsError::Reading { ns: self.name.clone(), what: format!("{table} {field}"), text };
            panic!("{e}")
        })
    }

    /// Runs `cmd` to success, naming this namespace in the error.
    fn checked(&self, cmd: &mut Command) -> Result<std::process::Output, NetNsError> {
        process::run(cmd).map_err(|source| NetNsError::Command { ns: self.name.clone(), source })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        stop_all_inside(&self.name, self.grace);
        // Never panic in drop (it may run while a failing test unwinds): log instead.
        if let Err(e) = process::run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("netns {}: {e}: {}", self.name, causes(&e));
        }
    }
}

/// `field` of `table` in a `/proc/net/snmp` text (a names row, then a values row, per table).
fn snmp_value(text: &str, table: &str, field: &str) -> Option<u64> {
    let prefix = format!("{table}:");
    let mut rows = text.lines().filter(|l| l.starts_with(&prefix));
    let (names, values) = (rows.next()?, rows.next()?);
    let i = names.split_whitespace().position(|n| n == field)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

fn pids(name: &str) -> Vec<u32> {
    let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// Stops every process whose network namespace is `name`: SIGKILL, or with a grace period SIGTERM
/// first and SIGKILL for those still there after it.
fn stop_all_inside(name: &str, grace: Option<Duration>) {
    if let Some(grace) = grace {
        for pid in pids(name) {
            let _ = process::signal(pid, libc::SIGTERM);
        }
        let _ = wait::until(grace, || pids(name).is_empty());
    }
    for pid in pids(name) {
        let _ = process::signal(pid, libc::SIGKILL);
    }
}

/// Deletes the namespaces of `prefix` left by processes that no longer exist (a run killed with
/// SIGKILL cannot run its guards).
fn sweep_stale(prefix: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(pid) = owner(prefix, name) else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("netns: removing {name}, left by process {pid}, which is gone");
            stop_all_inside(name, None);
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

fn enter(file: &std::fs::File, path: &str) {
    use std::os::fd::AsRawFd as _;
    // SAFETY: setns on a valid namespace fd; it only changes this thread's network namespace.
    #[expect(unsafe_code, reason = "libc::setns: no std API enters a namespace")]
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert!(rc == 0, "setns({path}): {}", std::io::Error::last_os_error());
}

#[cfg(test)]
mod tests {
    use super::{Naming, owner, snmp_value};

    #[test]
    fn names_carry_the_prefix_and_the_pid_the_sweep_reads_back() {
        let pid = std::process::id();
        let unique = Naming::TESTS.name("lb");
        assert!(unique.starts_with(&format!("stk{pid}x")) && unique.ends_with("lb"), "{unique}");
        assert_ne!(Naming::TESTS.name("lb"), unique, "two test namespaces of one role must differ");
        assert_eq!(Naming::PerProcess("stbench").name("cli"), format!("stbench{pid}cli"));
        assert_eq!(owner("stk", &unique), Some(pid));
        assert_eq!(owner("stbench", &format!("stbench{pid}srv")), Some(pid));
    }

    #[test]
    fn the_sweep_leaves_other_harnesses_namespaces_alone() {
        assert_eq!(owner("stk", "stbench123cli"), None, "the bench's prefix is not the tests'");
        assert_eq!(owner("stk", "stkdemo123c"), None, "no pid right after the prefix: not ours");
        assert_eq!(owner("stbench", "stk123x0lb"), None);
        assert_eq!(owner("stk", "docker0"), None);
    }

    #[test]
    fn snmp_fields_are_read_by_name() {
        let text = "Ip: Forwarding DefaultTTL InReceives\nIp: 2 64 1234\nTcp: RtoAlgorithm InSegs\nTcp: 1 99\n";
        assert_eq!(snmp_value(text, "Tcp", "InSegs"), Some(99));
        assert_eq!(snmp_value(text, "Ip", "InReceives"), Some(1234));
        assert_eq!(snmp_value(text, "Tcp", "OutSegs"), None, "a missing field must not read as another");
        assert_eq!(snmp_value(text, "Udp", "InDatagrams"), None);
    }
}

//! One RAII guard per network namespace: created with `ip netns add`, deleted (with every process
//! still inside it) on drop, also while a failing test unwinds.

use std::{
    process::{Command, Output},
    sync::{
        Once,
        atomic::{AtomicU32, Ordering},
    },
};

/// Prefix of every namespace the harness creates; the sweep below matches on it.
const PREFIX: &str = "stk";

/// A named network namespace (`/run/netns/<name>`), removed on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace named `stk<pid>x<n><role>` with `lo` up, IPv6 off (so no router
    /// solicitations or DAD traffic disturb packet counts), IPv4 forwarding off, and no routes at all.
    ///
    /// Forwarding is set, not inherited: a new namespace copies the IPv4 settings of the host's
    /// (`net.core.devconf_inherit_init_net` = 0), and the host's `ip_forward` flips to 1 the moment
    /// a test starts dockerd. A namespace that needs it (a balancer, the packet lab) turns it on.
    ///
    /// # Panics
    /// `ip netns add` fails (not root, or iproute2 missing).
    #[must_use]
    pub fn new(role: &str) -> Self {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale);
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!("{PREFIX}{}x{}{role}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        for key in ["all", "default"] {
            ns.sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6"), "1");
        }
        ns.sysctl("net.ipv4.ip_forward", "0");
        ns.ip(&["link", "set", "lo", "up"]);
        ns
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
        run_ok(Command::new("ip").arg("-n").arg(&self.name).args(args));
    }

    /// Sets a sysctl inside the namespace.
    ///
    /// # Panics
    /// The command fails.
    pub fn sysctl(&self, key: &str, value: &str) {
        run_ok(self.command("sysctl").args(["-qw", &format!("{key}={value}")]));
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`).
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
        let out = run_ok(self.command(program).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
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

    /// A counter of an interface in this namespace (`/sys/class/net/<iface>/statistics/<name>`).
    ///
    /// # Panics
    /// The interface or counter does not exist.
    #[must_use]
    pub fn iface_counter(&self, iface: &str, name: &str) -> u64 {
        let out = self.output("cat", &[&format!("/sys/class/net/{iface}/statistics/{name}")]);
        out.trim().parse().unwrap_or_else(|e| panic!("{iface} {name}: {out:?}: {e}"))
    }

    /// A value of `/proc/net/snmp` in this namespace, e.g. `("Tcp", "InSegs")`.
    ///
    /// # Panics
    /// The table or field does not exist.
    #[must_use]
    pub fn snmp(&self, table: &str, field: &str) -> u64 {
        let text = self.output("cat", &["/proc/net/snmp"]);
        let prefix = format!("{table}:");
        let mut rows = text.lines().filter(|l| l.starts_with(&prefix));
        let (Some(names), Some(values)) = (rows.next(), rows.next()) else { panic!("no {table} in /proc/net/snmp") };
        let i = names.split_whitespace().position(|n| n == field).unwrap_or_else(|| panic!("no {table} {field}"));
        values.split_whitespace().nth(i).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad {table} {field}"))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        kill_all_inside(&self.name);
        let out = Command::new("ip").args(["netns", "del", &self.name]).output();
        match out {
            Ok(o) if o.status.success() => {}
            // Never panic in drop (it may run while a failing test unwinds): log instead.
            Ok(o) => {
                eprintln!("netns {}: ip netns del failed: {}", self.name, String::from_utf8_lossy(&o.stderr).trim())
            }
            Err(e) => eprintln!("netns {}: ip netns del failed: {e}", self.name),
        }
    }
}

/// Kills every process whose network namespace is `name`.
fn kill_all_inside(name: &str) {
    if let Ok(o) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill has no memory-safety preconditions.
                #[expect(unsafe_code, reason = "libc::kill: no std API signals an arbitrary pid")]
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// Deletes namespaces left by harness processes that no longer exist (a test run killed with SIGKILL
/// cannot run its guards).
fn sweep_stale() {
    let Ok(o) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('x') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            kill_all_inside(name);
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

/// Runs `cmd` and returns its output.
///
/// # Panics
/// The command cannot start or exits non-zero; the message carries its stderr.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    out
}

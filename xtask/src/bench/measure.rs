//! What the bench reads from /proc: per-CPU busy and softirq time, processes' CPU time and RSS, and
//! the kernel memory of a process's BPF maps.

use std::time::Duration;

/// Clock ticks per second of /proc/stat and /proc/<pid>/stat (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_second() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// One CPU's counters from /proc/stat, in seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    /// Everything but idle and iowait (user, nice, system, irq, softirq, steal).
    pub busy: f64,
    /// Softirq alone (network receive processing, among others).
    pub softirq: f64,
}

/// Every CPU's counters, indexed by CPU number.
///
/// # Errors
/// /proc/stat cannot be read.
pub fn cpu_times() -> anyhow::Result<Vec<CpuTimes>> {
    let text = std::fs::read_to_string("/proc/stat")?;
    let tck = ticks_per_second();
    let mut cpus = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.next() else { continue };
        if !name.starts_with("cpu") || name == "cpu" {
            continue;
        }
        let v: Vec<f64> = fields.filter_map(|f| f.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
        if v.len() < 8 {
            continue;
        }
        let total: f64 = v[..8].iter().sum();
        cpus.push(CpuTimes { busy: (total - v[3] - v[4]) / tck, softirq: v[6] / tck });
    }
    Ok(cpus)
}

/// A process's CPU time (all its threads, live and exited).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessCpu {
    /// utime: in the process's own code (and its libraries).
    pub user: Duration,
    /// stime: in the kernel on its behalf (system calls, and the packet work that runs in its context).
    pub system: Duration,
}

/// utime and stime of a process, or `None` if it is gone.
#[must_use]
pub fn process_cpu(pid: u32) -> Option<ProcessCpu> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3, `state`.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let tck = ticks_per_second();
    Some(ProcessCpu { user: Duration::from_secs_f64(utime / tck), system: Duration::from_secs_f64(stime / tck) })
}

/// The summed user and total (user + system) CPU seconds of `pids` (those still alive).
#[must_use]
pub fn processes_cpu_s(pids: &[u32]) -> (f64, f64) {
    pids.iter()
        .filter_map(|p| process_cpu(*p))
        .fold((0.0, 0.0), |(u, t), c| (u + c.user.as_secs_f64(), t + (c.user + c.system).as_secs_f64()))
}

/// Resident set size of a process in KiB (`VmRSS`), or `None` if it is gone.
#[must_use]
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The kernel memory charged to the BPF maps a process holds open, in KiB: the sum of `memlock` over
/// its map file descriptors (/proc/<pid>/fdinfo), with their count.
#[must_use]
pub fn bpf_map_kib(pid: u32) -> (u64, u32) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return (0, 0);
    };
    let (mut bytes, mut maps) = (0u64, 0u32);
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        if !text.lines().any(|l| l.starts_with("map_type:")) {
            continue;
        }
        if let Some(memlock) =
            text.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse::<u64>().ok())
        {
            bytes += memlock;
            maps += 1;
        }
    }
    (bytes / 1024, maps)
}

/// The 1, 5 and 15 minute load averages.
#[must_use]
pub fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut v = text.split_whitespace().filter_map(|f| f.parse().ok());
    [v.next().unwrap_or(0.0), v.next().unwrap_or(0.0), v.next().unwrap_or(0.0)]
}

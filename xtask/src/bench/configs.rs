//! The configurations under test, as data: what runs in the balancer namespace, what wrk sends, what
//! affinity the bench checks, which HAProxy row it is compared with and which goals it carries.

use std::{
    net::{SocketAddr, SocketAddrV4, SocketAddrV6},
    path::Path,
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};
use testkit::{ChildGuard, wait};

use super::topology::{
    self, LB_CPU, LB_IFACES, LOAD_CPU, Topology, VIP, VIP_PORT, VIP6, backend_addr, backend_addr6, backend_name,
    pinned, spawn,
};
pub use super::{tls::Tls, workdir::Workdir};

/// How often the bench checks whether something it started is ready.
const POLL: Duration = Duration::from_millis(100);

/// Backends every configuration balances over (b1 and b2; direct uses b1 alone).
pub const BACKENDS: u16 = 2;

/// What runs in the balancer namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balancer {
    /// Nothing: the client talks to b1, routed through the balancer namespace (the limit).
    Direct,
    /// `sticky run` (http), one worker; `splice`: with `--splice`.
    StickyHttp {
        /// Pass `--splice` (kernel relay of pinned keep-alive connections).
        splice: bool,
    },
    /// `sticky run --mode tcp`; `kernel: false` adds `--no-ebpf` (the user-space fallback).
    StickyTcp {
        /// eBPF full NAT (true) or the user-space proxy (false).
        kernel: bool,
    },
    /// HAProxy, http mode, `cookie SRV insert indirect nocache`, one thread.
    HaproxyHttp,
    /// HAProxy, tcp mode, `balance source`, one thread.
    HaproxyTcp,
    /// nginx, `hash $cookie_sid consistent` with upstream keep-alive, one worker.
    NginxHash,
    /// iptables DNAT to b1/b2 round robin (`statistic nth`), no affinity (ip6tables for an IPv6 row).
    IptablesDnat,
}

/// The affinity a configuration promises, which the bench checks from response bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affinity {
    /// Only b1 answers (direct).
    Single,
    /// The balancer issues cookie `name` (Set-Cookie on every response without one) and routes a
    /// request carrying it to the backend it was issued with.
    CookieIssued(&'static str),
    /// The client picks cookie `name`'s value; the balancer hashes it to a backend, always the same one.
    CookieHashed(&'static str),
    /// All connections of one client address reach one backend.
    ClientIp,
    /// None: new connections spread over the backends.
    Spread,
}

/// What wrk sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// No cookie: a cookie balancer starts a new session on every request.
    Plain,
    /// A cookie the bench checked pins to one backend (the cookie-jar case).
    Pinned,
}

/// A goal of the issue, evaluated next to a sticky row (never asserted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// req/s at least `factor` x the `peer` row's, and p99 no worse.
    AtLeastPeerWithP99(&'static str, f64),
    /// req/s at least `factor` x row `peer`'s.
    AtLeast(&'static str, f64),
    /// LB process µs/request at most `factor` x row `peer`'s.
    CpuAtMost(&'static str, f64),
    /// LB process µs/request at most `factor` x the lowest of the `peers` rows' (all must be measured).
    CpuAtMostBest(&'static [&'static str], f64),
    /// Memory per idle keep-alive client connection at most `factor` x row `peer`'s.
    IdleAtMost(&'static str, f64),
}

/// One configuration.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Stable id (JSON key, `--only`).
    pub id: &'static str,
    /// Table label.
    pub title: &'static str,
    /// What runs.
    pub balancer: Balancer,
    /// What wrk sends.
    pub load: Load,
    /// TLS to the balancer (https rows), and how connections use it; `None`: plain http.
    pub tls: Option<Tls>,
    /// IPv6 end to end (the `-v6` rows): the client sends to [`VIP6`] (direct: b1's IPv6 address) and
    /// the balancer forwards to the backends' IPv6 addresses. Plain http only.
    pub ipv6: bool,
    /// The HAProxy row to compare with.
    pub peer: Option<&'static str>,
    /// Goals stated next to the row.
    pub goals: &'static [Goal],
}

impl Config {
    /// The affinity the bench checks.
    #[must_use]
    pub fn affinity(&self) -> Affinity {
        match self.balancer {
            Balancer::Direct => Affinity::Single,
            Balancer::StickyHttp { .. } => Affinity::CookieIssued(STICKY_COOKIE),
            Balancer::HaproxyHttp => Affinity::CookieIssued("SRV"),
            Balancer::NginxHash => Affinity::CookieHashed("sid"),
            Balancer::StickyTcp { .. } | Balancer::HaproxyTcp => Affinity::ClientIp,
            Balancer::IptablesDnat => Affinity::Spread,
        }
    }

    /// Where wrk sends.
    #[must_use]
    pub fn target(&self) -> SocketAddr {
        match (self.balancer, self.tls, self.ipv6) {
            (Balancer::Direct, _, _) => self.backend(1),
            (_, Some(_), _) => SocketAddrV4::new(VIP, VIP_TLS_PORT).into(),
            (_, None, false) => SocketAddrV4::new(VIP, VIP_PORT).into(),
            (_, None, true) => SocketAddrV6::new(VIP6, VIP_PORT, 0, 0).into(),
        }
    }

    /// Backend `n`'s address in this configuration's address family.
    #[must_use]
    pub fn backend(&self, n: u16) -> SocketAddr {
        if self.ipv6 { backend_addr6(n).into() } else { backend_addr(n).into() }
    }

    /// The row whose req/s this one's "x direct" divides by: direct in the same address family.
    #[must_use]
    pub fn direct(&self) -> &'static str {
        if self.ipv6 { DIRECT_V6 } else { DIRECT }
    }
}

/// The https rows' port on the VIP.
pub const VIP_TLS_PORT: u16 = 443;

/// sticky's cookie name (its default).
pub const STICKY_COOKIE: &str = "sticky";

const DIRECT: &str = "direct";
const DIRECT_V6: &str = "direct-v6";
const HAPROXY_NEW: &str = "haproxy-http-new";
const HAPROXY_PINNED: &str = "haproxy-http-pinned";
const HAPROXY_TCP: &str = "haproxy-tcp";
const NGINX: &str = "nginx-hash";
const HAPROXY_HTTPS_PINNED: &str = "haproxy-https-pinned";
const HAPROXY_HTTPS_HANDSHAKE: &str = "haproxy-https-handshake";
const HAPROXY_HTTPS_RESUMED: &str = "haproxy-https-resumed";
const NGINX_HTTPS: &str = "nginx-https";
const NGINX_HTTPS_HANDSHAKE: &str = "nginx-https-handshake";
const NGINX_HTTPS_RESUMED: &str = "nginx-https-resumed";
const HAPROXY_H2_PINNED: &str = "haproxy-h2-pinned";
const NGINX_H2: &str = "nginx-h2";

/// Every configuration, in the order they run. iptables and ip6tables DNAT run last: once a namespace
/// has a nat table, conntrack stays hooked in it (for that family), which would tax every later
/// configuration.
pub const ALL: &[Config] = &[
    Config {
        id: DIRECT,
        title: "direct to b1 (routed through the balancer namespace)",
        balancer: Balancer::Direct,
        load: Load::Plain,
        tls: None,
        ipv6: false,
        peer: None,
        goals: &[],
    },
    Config {
        id: DIRECT_V6,
        title: "direct to b1 over IPv6 (routed through the balancer namespace)",
        balancer: Balancer::Direct,
        load: Load::Plain,
        tls: None,
        ipv6: true,
        peer: None,
        goals: &[],
    },
    Config {
        id: "sticky-http-new",
        title: "sticky http, new sessions (no cookie)",
        balancer: Balancer::StickyHttp { splice: false },
        load: Load::Plain,
        tls: None,
        ipv6: false,
        peer: Some(HAPROXY_NEW),
        goals: &[Goal::CpuAtMost(NGINX, 1.0), Goal::CpuAtMost(HAPROXY_NEW, 0.8), Goal::IdleAtMost(NGINX, 1.25)],
    },
    Config {
        id: "sticky-http-pinned",
        title: "sticky http, pinned (valid cookie)",
        balancer: Balancer::StickyHttp { splice: false },
        load: Load::Pinned,
        tls: None,
        ipv6: false,
        peer: Some(HAPROXY_PINNED),
        goals: &[
            Goal::AtLeastPeerWithP99(HAPROXY_PINNED, 1.2),
            Goal::CpuAtMost(NGINX, 1.0),
            Goal::CpuAtMost(HAPROXY_PINNED, 0.8),
            Goal::IdleAtMost(NGINX, 1.25),
        ],
    },
    Config {
        id: "sticky-http-pinned-splice",
        title: "sticky http pinned + splice",
        balancer: Balancer::StickyHttp { splice: true },
        load: Load::Pinned,
        tls: None,
        ipv6: false,
        peer: Some(HAPROXY_PINNED),
        goals: &[Goal::AtLeastPeerWithP99(HAPROXY_PINNED, 1.2)],
    },
    Config {
        id: HAPROXY_NEW,
        title: "HAProxy cookie insert, new sessions (no cookie)",
        balancer: Balancer::HaproxyHttp,
        load: Load::Plain,
        tls: None,
        ipv6: false,
        peer: None,
        goals: &[],
    },
    Config {
        id: HAPROXY_PINNED,
        title: "HAProxy cookie insert, pinned (SRV cookie)",
        balancer: Balancer::HaproxyHttp,
        load: Load::Pinned,
        tls: None,
        ipv6: false,
        peer: None,
        goals: &[],
    },
    Config {
        id: NGINX,
        title: "nginx hash $cookie_sid consistent (fixed cookie)",
        balancer: Balancer::NginxHash,
        load: Load::Pinned,
        tls: None,
        ipv6: false,
        peer: Some(HAPROXY_PINNED),
        goals: &[],
    },
    Config {
        id: "sticky-https-pinned",
        title: "sticky https, pinned, keep-alive (TLS record layer only)",
        balancer: Balancer::StickyHttp { splice: false },
        load: Load::Pinned,
        tls: Some(Tls::KeepAlive),
        ipv6: false,
        peer: Some(HAPROXY_HTTPS_PINNED),
        goals: &[Goal::CpuAtMostBest(&[HAPROXY_HTTPS_PINNED, NGINX_HTTPS], 1.0)],
    },
    Config {
        id: "sticky-https-handshake",
        title: "sticky https, pinned, full TLS handshake per request",
        balancer: Balancer::StickyHttp { splice: false },
        load: Load::Pinned,
        tls: Some(Tls::Full),
        ipv6: false,
        peer: Some(HAPROXY_HTTPS_HANDSHAKE),
        goals: &[Goal::CpuAtMostBest(&[HAPROXY_HTTPS_HANDSHAKE, NGINX_HTTPS_HANDSHAKE], 1.0)],
    },
    Config {
        id: "sticky-https-resumed",
        title: "sticky https, pinned, resumed TLS session per request",
        balancer: Balancer::StickyHttp { splice: false },
        load: Load::Pinned,
        tls: Some(Tls::Resumed),
        ipv6: false,
        peer: Some(HAPROXY_HTTPS_RESUMED),
        goals: &[Goal::CpuAtMostBest(&[HAPROXY_HTTPS_RESUMED, NGINX_HTTPS_RESUMED], 1.0)],
    },
    Config {
        id: HAPROXY_HTTPS_PINNED,
        title: "HAProxy ssl crt, cookie insert, pinned, keep-alive",
        balancer: Balancer::HaproxyHttp,
        load: Load::Pinned,
        tls: Some(Tls::KeepAlive),
        ipv6: false,
        peer: None,
        goals: &[],
    },
    Config {
        id: HAPROXY_HTTPS_HANDSHAKE,
        title: "HAProxy ssl crt, pinned, full TLS handshake per request",
        balancer: Balancer::HaproxyHttp,
        load: Load::Pinned,
        tls: Some(Tls::Full),
        ipv6: false,
        peer: None,
        goals: &[],
    },
    Config {
        id: HAPROXY_HTTPS_RESUMED,
        title: "HAProxy ssl crt, pinned, resumed TLS session per request",
        balancer: Balancer::HaproxyHttp,
        load: Load::Pinned,
        tls: Some(Tls::Resumed),
        ipv6: false,
        peer: None,
        goals: &[],
    },
    Config {
        id: NGINX_HTTPS,
        title: "nginx ssl, hash $cookie_sid (fixed cookie), keep-alive",
        balancer: Balancer::NginxHash,
        load: Load::Pinned,
        tls: Some(Tls::KeepAlive),
        ipv6: false,
        peer: Some(HAPROXY_HTTPS_PINNED),
        goals: &[],
    },
    Config {
        id: NGINX_HTTPS_HANDSHAKE,
        title: "nginx ssl, hash $cookie_sid, full TLS handshake per request",
        balancer: Balancer::NginxHash,
        load: Load::Pinned,
        tls: Some(Tls::Full),
        ipv6: false,
        peer: Some(HAPROXY_HTTPS_HANDSHAKE),
        goals: &[],
    },
    Config {
        id: NGINX_HTTPS_RESUMED,
        title: "nginx ssl, hash $cookie_sid, resumed TLS session per request",
        balancer: Balancer::NginxHash,
        load: Load::Pinned,
        tls: Some(Tls::Resumed),
        ipv6: false,
        peer: Some(HAPROXY_HTTPS_RESUMED),
        goals: &[],
    },
    Config {
        id: "sticky-h2-pinned",
        title: "sticky h2 (TLS, ALPN), pinned, h2load 10 connections x 10 streams",
        balancer: Balancer::StickyHttp { splice: false },
        load: Load::Pinned,
        tls: Some(Tls::H2),
        ipv6: false,
        peer: Some(HAPROXY_H2_PINNED),
        goals: &[Goal::CpuAtMostBest(&[HAPROXY_H2_PINNED, NGINX_H2], 1.0)],
    },
    Config {
        id: "sticky-h2-firstwave",
        title: "sticky h2, first wave (no cookie: each connection's streams on one backend, one cookie)",
        balancer: Balancer::StickyHttp { splice: false },
        load: Load::Plain,
        tls: Some(Tls::H2),
        ipv6: false,
        peer: Some(HAPROXY_H2_PINNED),
        goals: &[Goal::CpuAtMostBest(&[HAPROXY_H2_PINNED, NGINX_H2], 1.0)],
    },
    Config {
        id: HAPROXY_H2_PINNED,
        title: "HAProxy ssl crt alpn h2, cookie insert, pinned",
        balancer: Balancer::HaproxyHttp,
        load: Load::Pinned,
        tls: Some(Tls::H2),
        ipv6: false,
        peer: None,
        goals: &[],
    },
    Config {
        id: NGINX_H2,
        title: "nginx ssl http2, hash $cookie_sid (fixed cookie)",
        balancer: Balancer::NginxHash,
        load: Load::Pinned,
        tls: Some(Tls::H2),
        ipv6: false,
        peer: Some(HAPROXY_H2_PINNED),
        goals: &[],
    },
    Config {
        id: "sticky-tcp-kernel",
        title: "sticky tcp, kernel (eBPF full NAT)",
        balancer: Balancer::StickyTcp { kernel: true },
        load: Load::Plain,
        tls: None,
        ipv6: false,
        peer: Some(HAPROXY_TCP),
        goals: &[Goal::AtLeast("direct", 0.9), Goal::AtLeast(HAPROXY_TCP, 2.0), Goal::AtLeast("iptables-dnat", 1.0)],
    },
    Config {
        id: "sticky-tcp-kernel-v6",
        title: "sticky tcp, kernel (eBPF full NAT), IPv6",
        balancer: Balancer::StickyTcp { kernel: true },
        load: Load::Plain,
        tls: None,
        ipv6: true,
        peer: Some(HAPROXY_TCP),
        goals: &[],
    },
    Config {
        id: "sticky-tcp-user",
        title: "sticky tcp, user-space fallback (--no-ebpf)",
        balancer: Balancer::StickyTcp { kernel: false },
        load: Load::Plain,
        tls: None,
        ipv6: false,
        peer: Some(HAPROXY_TCP),
        goals: &[],
    },
    Config {
        id: HAPROXY_TCP,
        title: "HAProxy mode tcp, balance source",
        balancer: Balancer::HaproxyTcp,
        load: Load::Plain,
        tls: None,
        ipv6: false,
        peer: None,
        goals: &[],
    },
    Config {
        id: "iptables-dnat",
        title: "iptables DNAT round robin (no affinity)",
        balancer: Balancer::IptablesDnat,
        load: Load::Plain,
        tls: None,
        ipv6: false,
        peer: Some(HAPROXY_TCP),
        goals: &[],
    },
    Config {
        id: "ip6tables-dnat-v6",
        title: "ip6tables DNAT round robin (no affinity), IPv6",
        balancer: Balancer::IptablesDnat,
        load: Load::Plain,
        tls: None,
        ipv6: true,
        peer: Some(HAPROXY_TCP),
        goals: &[],
    },
];

/// Why a configuration cannot run with this build, if it cannot.
#[must_use]
pub fn unavailable(config: &Config, sticky_help: &str) -> Option<String> {
    match config.balancer {
        Balancer::StickyHttp { splice: true } if !sticky_help.contains("--splice") => {
            Some("not available in this build (`sticky run --help` has no --splice)".to_owned())
        }
        Balancer::StickyHttp { .. } if config.tls.is_some() && !sticky_help.contains("--listen-tls") => {
            Some("not available in this build (`sticky run --help` has no --listen-tls)".to_owned())
        }
        _ => None,
    }
}

/// What the bench starts and must stop for one configuration.
#[derive(Debug)]
pub struct Running<'t> {
    /// The balancer's processes (empty for direct and DNAT), stopped when dropped.
    pub procs: Vec<ChildGuard>,
    /// The namespace whose NAT rules to flush, and with which tool (DNAT: `iptables` or `ip6tables`).
    iptables: Option<(&'t testkit::NetNs, &'static str)>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some((ns, tool)) = self.iptables {
            let _ = ns.command(tool).args(["-t", "nat", "-F", "PREROUTING"]).output();
        }
    }
}

/// Starts `config`'s balancer on the balancer CPU and returns once it is listening (user space) or
/// its rules are in (kernel).
///
/// # Errors
/// It fails to start, or the kernel path fell back to user space.
pub fn start<'t>(config: &Config, topo: &'t Topology, work: &Workdir, sticky: &Path) -> anyhow::Result<Running<'t>> {
    start_with_env(config, topo, work, sticky, &[])
}

/// [`start`], with `env` added to sticky's environment (http mode; the idle-connection measurement's
/// allocator setting).
///
/// # Errors
/// As [`start`].
pub fn start_with_env<'t>(
    config: &Config,
    topo: &'t Topology,
    work: &Workdir,
    sticky: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<Running<'t>> {
    let mut running = Running { procs: Vec::new(), iptables: None };
    let log = work.file(&format!("{}.log", config.id));
    let vip = config.target().to_string();
    let certificate = super::tls::Files::of(work);
    match config.balancer {
        Balancer::Direct => {}
        Balancer::StickyHttp { splice } => {
            let mut cmd = sticky_http(config, topo, work, sticky, splice);
            cmd.envs(env.iter().copied());
            running.procs.push(spawn("sticky", &mut cmd, &log)?);
        }
        Balancer::StickyTcp { kernel } => {
            let mut cmd = pinned(&topo.lb, LB_CPU, sticky);
            cmd.args(["run", "--mode", "tcp", "--listen", &vip]);
            for n in 1..=BACKENDS {
                cmd.args(["--backend", &config.backend(n).to_string()]);
            }
            if kernel {
                for iface in LB_IFACES {
                    cmd.args(["--iface", iface]);
                }
            } else {
                cmd.arg("--no-ebpf");
            }
            running.procs.push(spawn("sticky", &mut cmd, &log)?);
        }
        Balancer::HaproxyHttp | Balancer::HaproxyTcp => {
            let http = config.balancer == Balancer::HaproxyHttp;
            let (name, template) = if config.tls.is_some() {
                ("haproxy-https.cfg", include_str!("../../../bench/haproxy-http.cfg"))
            } else if http {
                ("haproxy-http.cfg", include_str!("../../../bench/haproxy-http.cfg"))
            } else {
                ("haproxy-tcp.cfg", include_str!("../../../bench/haproxy-tcp.cfg"))
            };
            let servers: Vec<String> = (1..=BACKENDS)
                .map(|n| {
                    let cookie = if http { format!(" cookie {}", backend_name(n)) } else { String::new() };
                    format!("  server {} {}{cookie}", backend_name(n), backend_addr(n))
                })
                .collect();
            // https: the same frontend with TLS on its bind line (HAProxy's defaults otherwise:
            // session cache and tickets on, so resumption works).
            let bind = match config.tls {
                Some(tls) => {
                    let alpn = if tls == Tls::H2 { "h2,http/1.1" } else { "http/1.1" };
                    format!("{vip} ssl crt {} alpn {alpn} ssl-min-ver TLSv1.2", certificate.combined.display())
                }
                None => vip.clone(),
            };
            let path = work.file(name);
            write_template(&path, template, &[("listen", &bind), ("servers", &servers.join("\n"))])?;
            let mut cmd = pinned(&topo.lb, LB_CPU, Path::new("haproxy"));
            cmd.arg("-db").arg("-f").arg(&path);
            running.procs.push(spawn("haproxy", &mut cmd, &log)?);
        }
        Balancer::NginxHash => {
            let mut cmd = nginx_balancer(config, topo, work)?;
            running.procs.push(spawn("nginx (balancer)", &mut cmd, &log)?);
        }
        Balancer::IptablesDnat => {
            let (tool, vip) = if config.ipv6 { ("ip6tables", VIP6.to_string()) } else { ("iptables", VIP.to_string()) };
            running.iptables = Some((&topo.lb, tool));
            for n in 1..=BACKENDS {
                let mut cmd = topo.lb.command(tool);
                cmd.args(["-t", "nat", "-A", "PREROUTING", "-d", &vip, "-p", "tcp"])
                    .args(["--dport", &VIP_PORT.to_string()]);
                // rule n of N takes every (N-n+1)-th remaining new connection: round robin
                let remaining = BACKENDS - n + 1;
                if remaining > 1 {
                    cmd.args(["-m", "statistic", "--mode", "nth", "--every", &remaining.to_string(), "--packet", "0"]);
                }
                cmd.args(["-j", "DNAT", "--to-destination", &config.backend(n).to_string()]);
                testkit::process::run(&mut cmd)?;
            }
        }
    }
    wait_serving(config, topo, work, &mut running, &log)?;
    if config.balancer == (Balancer::StickyTcp { kernel: true }) {
        wait_kernel_path(&log)?;
    }
    Ok(running)
}

/// `sticky run` in http mode (https: `--listen-tls` with the run's certificate), one worker.
fn sticky_http(config: &Config, topo: &Topology, work: &Workdir, sticky: &Path, splice: bool) -> Command {
    let vip = config.target().to_string();
    let mut cmd = pinned(&topo.lb, LB_CPU, sticky);
    if config.tls.is_some() {
        // The plain listener (always on) stays on the VIP's port 80, unused.
        let certificate = super::tls::Files::of(work);
        let plain = SocketAddrV4::new(VIP, VIP_PORT).to_string();
        cmd.args(["run", "--listen", &plain, "--listen-tls", &vip, "--tls-cert"])
            .arg(&certificate.cert)
            .arg("--tls-key")
            .arg(&certificate.key);
    } else {
        cmd.args(["run", "--listen", &vip]);
    }
    cmd.args(["--workers", "1", "--shutdown-timeout", "1s", "--cookie-key-file"]).arg(work.file("cookie.key"));
    for n in 1..=BACKENDS {
        cmd.args(["--backend", &format!("{}=http://{}", backend_name(n), backend_addr(n))]);
    }
    if splice {
        cmd.arg("--splice");
    }
    cmd
}

/// nginx as the balancer (bench/nginx-lb.conf; https: `listen ... ssl` with the run's certificate).
fn nginx_balancer(config: &Config, topo: &Topology, work: &Workdir) -> anyhow::Result<Command> {
    let vip = config.target().to_string();
    let servers: Vec<String> = (1..=BACKENDS).map(|n| format!("    server {};", backend_addr(n))).collect();
    let path = work.file(if config.tls.is_some() { "nginx-https.conf" } else { "nginx-lb.conf" });
    let dir = work.dir.to_string_lossy();
    // https: nginx's defaults otherwise (session tickets on, so resumption works; no shared session
    // cache), TLS 1.2 and 1.3 only as sticky's rustls.
    let (listen, tls) = match config.tls {
        Some(tls) => {
            let certificate = super::tls::Files::of(work);
            (
                // nginx 1.22 turns HTTP/2 on per listen (ALPN h2, then http/1.1)
                if tls == Tls::H2 { format!("{vip} ssl http2") } else { format!("{vip} ssl") },
                format!(
                    "\n    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.2 TLSv1.3;",
                    certificate.cert.display(),
                    certificate.key.display()
                ),
            )
        }
        None => (vip, String::new()),
    };
    write_template(
        &path,
        include_str!("../../../bench/nginx-lb.conf"),
        &[("dir", &dir), ("listen", &listen), ("tls", &tls), ("cookie", "sid"), ("servers", &servers.join("\n"))],
    )?;
    let mut cmd = pinned(&topo.lb, LB_CPU, Path::new("nginx"));
    cmd.arg("-p").arg(&work.dir).arg("-e").arg(work.file("nginx-lb.err")).arg("-c").arg(&path);
    cmd.args(["-g", "daemon off;"]);
    Ok(cmd)
}

/// Waits (at most 5 s) until sticky's log says tcp mode runs in the kernel; fails if it says user space.
///
/// # Errors
/// It fell back to user space, or never said.
pub fn wait_kernel_path(log: &Path) -> anyhow::Result<()> {
    let mut in_kernel = false;
    wait::until(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        in_kernel = text.contains("tcp mode in the kernel");
        in_kernel || text.contains("tcp mode in user space") || text.contains("runs in user space")
    });
    if in_kernel {
        return Ok(());
    }
    bail!("sticky tcp did not start in the kernel (see {}):\n{}", log.display(), tail(log))
}

/// Waits (at most 10 s) until a GET through the configuration gets a 200 from the client namespace
/// (https: with the certificate checked against the run's CA).
fn wait_serving(
    config: &Config,
    topo: &Topology,
    work: &Workdir,
    running: &mut Running<'_>,
    log: &Path,
) -> anyhow::Result<()> {
    let target = config.target();
    let (url, tls_args) = match config.tls {
        Some(_) => {
            let name = super::tls::SERVER_NAME;
            let ca = super::tls::Files::of(work).ca.to_string_lossy().into_owned();
            let resolve = format!("{name}:{}:{}", target.port(), target.ip());
            (
                format!("https://{name}:{}/", target.port()),
                vec!["--cacert".to_owned(), ca, "--resolve".to_owned(), resolve],
            )
        }
        None => (format!("http://{target}/"), Vec::new()),
    };
    let served = wait::try_until(Duration::from_secs(10), POLL, || -> anyhow::Result<bool> {
        super::check_interrupted()?;
        for p in &mut running.procs {
            let name = p.name().to_owned();
            p.check_alive()
                .with_context(|| format!("{name} failed to start; its log {}:\n{}", log.display(), tail(log)))?;
        }
        let out = topo
            .cli
            .command("curl")
            .args(["-s", "-o", "/dev/null", "-m", "1", "-w", "%{http_code}"])
            .args(&tls_args)
            .arg(&url)
            .output()
            .context("failed to run curl")?;
        Ok(out.stdout == b"200")
    })?;
    anyhow::ensure!(served, "{} did not serve {url} within 10 s; log {}:\n{}", config.id, log.display(), tail(log));
    Ok(())
}

/// The last lines of a log.
#[must_use]
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Writes `template` with each `{{key}}` replaced.
///
/// # Errors
/// The file cannot be written, or a placeholder is left.
pub fn write_template(path: &Path, template: &str, values: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut text = template.to_owned();
    for (key, value) in values {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    if let Some(at) = text.find("{{") {
        bail!("{}: placeholder left: {}", path.display(), &text[at..text.len().min(at + 20)]);
    }
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}

/// Starts backends `numbers` (`bN` on port 8080 + N): one nginx with `workers` workers on the load
/// CPU. With several workers each port is bound per worker (`reuseport`), so the kernel spreads
/// connections evenly over them.
///
/// # Errors
/// nginx fails to start or to answer.
pub fn start_backends(
    topo: &Topology,
    work: &Workdir,
    name: &str,
    numbers: std::ops::RangeInclusive<u16>,
    workers: u32,
) -> anyhow::Result<ChildGuard> {
    std::fs::create_dir_all(work.file("tmp"))?;
    let reuseport = if workers > 1 { " reuseport" } else { "" };
    let last = *numbers.end();
    let servers: Vec<String> = numbers
        .map(|n| {
            format!(
                "  server {{ listen {}{reuseport}; listen {}{reuseport}; location / {{ return 200 \"{}\\n\"; }} }}",
                backend_addr(n),
                backend_addr6(n),
                backend_name(n)
            )
        })
        .collect();
    let path = work.file(&format!("{name}.conf"));
    let dir = work.dir.to_string_lossy();
    let nofile = topology::fd_limit();
    write_template(
        &path,
        include_str!("../../../bench/backends.nginx.conf"),
        &[
            ("dir", &dir),
            ("name", name),
            ("workers", &workers.to_string()),
            ("nofile", &nofile.to_string()),
            ("connections", &nofile.saturating_sub(100).to_string()),
            ("servers", &servers.join("\n")),
        ],
    )?;
    let err = work.file(&format!("{name}.err"));
    let mut cmd = pinned(&topo.srv, LOAD_CPU, Path::new("nginx"));
    cmd.arg("-p").arg(&work.dir).arg("-e").arg(&err).arg("-c").arg(&path);
    cmd.args(["-g", "daemon off;"]);
    let mut proc = spawn(&format!("nginx ({name})"), &mut cmd, &work.file(&format!("{name}.log")))?;
    let url = format!("http://{}/", backend_addr(last));
    let body = format!("{}\n", backend_name(last));
    let answered = wait::try_until(Duration::from_secs(10), POLL, || -> anyhow::Result<bool> {
        proc.check_alive().with_context(|| format!("nginx {name}: {}", tail(&err)))?;
        let out = topo.cli.command("curl").args(["-s", "-m", "1", &url]).output()?;
        Ok(out.stdout == body.as_bytes())
    })?;
    anyhow::ensure!(answered, "nginx {name} did not answer {url} within 10 s");
    Ok(proc)
}

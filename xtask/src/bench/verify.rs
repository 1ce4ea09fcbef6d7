//! Did a configuration serve, and pin, correctly? Checked from response bodies twice: by the probe
//! before the load (new connections, issued and chosen cookies), and by wrk's warm-up run under the
//! load itself (bench/verify.lua counts who answered).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use anyhow::{Context as _, bail, ensure};

use super::{
    configs::{Affinity, BACKENDS, Config, Load, Workdir},
    probe::{Reply, Spec},
    tls,
    topology::{LOAD_CPU, Topology, backend_name, pinned},
    wrk,
};

/// What the functional check established.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    /// The cookie wrk sends (pinned load), and the backend it pins to.
    pub cookie: Option<(String, String)>,
    /// One line saying what was checked.
    pub summary: String,
}

/// Runs a probe in the client namespace and returns its stdout.
///
/// # Errors
/// The probe fails.
pub fn probe(topo: &Topology, exe: &Path, spec: &Spec) -> anyhow::Result<String> {
    let json = serde_json::to_string(spec)?;
    let mut cmd = pinned(&topo.cli, LOAD_CPU, exe);
    cmd.args(["bench-probe", &json]);
    let out = testkit::process::run(&mut cmd).context("the probe failed")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where the checks send and with what: the probe (plain http), or curl over TLS (https rows).
struct Client<'a> {
    topo: &'a Topology,
    exe: &'a Path,
    work: &'a Workdir,
    config: &'a Config,
}

fn requests(
    client: &Client<'_>,
    cookies: Vec<Option<String>>,
    connections: u32,
    requests: u32,
) -> anyhow::Result<Vec<Reply>> {
    let Client { topo, exe, work, config } = *client;
    let replies: Vec<Reply> = if config.tls.is_some() {
        let http2 = config.tls == Some(tls::Tls::H2);
        tls::requests(topo, &tls::Files::of(work), config.target(), &cookies, connections, requests, http2)?
    } else {
        let spec = Spec::Requests { target: config.target(), cookies, connections, requests };
        let out = probe(topo, exe, &spec)?;
        serde_json::from_str(out.trim()).context("bad probe output")?
    };
    for r in &replies {
        ensure!(r.status == 200, "status {} (cookie #{}, connection {})", r.status, r.cookie, r.conn);
        let Some(b) = &r.backend else { bail!("a response body named no backend (connection {})", r.conn) };
        ensure!(
            all_backends().contains(b),
            "a response came from {b}, which is not one of this configuration's backends"
        );
    }
    Ok(replies)
}

fn all_backends() -> BTreeSet<String> {
    (1..=BACKENDS).map(backend_name).collect()
}

fn backends_of<'a>(replies: impl IntoIterator<Item = &'a Reply>) -> BTreeSet<String> {
    replies.into_iter().filter_map(|r| r.backend.clone()).collect()
}

/// Checks `config` from new connections (before the load) and picks the cookie wrk sends. https
/// rows are checked over TLS (curl, the certificate verified), and must resume a TLS session.
///
/// # Errors
/// A response is wrong: not 200, a body naming no backend or another one than the affinity promises;
/// or an https row does not serve over TLS or does not resume.
pub fn functional(topo: &Topology, exe: &Path, work: &Workdir, config: &Config) -> anyhow::Result<Checked> {
    let mut checked = checked_plain(&Client { topo, exe, work, config })?;
    if config.tls.is_some() {
        let resumed = tls::resumption(topo, &tls::Files::of(work), work, config.target())?;
        checked.summary = format!("over TLS (curl, certificate checked): {}; {resumed}", checked.summary);
    }
    Ok(checked)
}

fn checked_plain(client: &Client<'_>) -> anyhow::Result<Checked> {
    let config = client.config;
    let mut checked = Checked::default();
    match config.affinity() {
        Affinity::Single => {
            let replies = requests(client, vec![None], 4, 5)?;
            ensure!(backends_of(&replies) == BTreeSet::from([backend_name(1)]), "direct: not every body was b1");
            checked.summary = format!("{} responses over 4 connections, all from b1", replies.len());
        }
        Affinity::CookieIssued(name) => {
            let prefix = format!("{name}=");
            let fresh = requests(client, vec![None], 2, 10)?;
            let mut issued: BTreeMap<String, String> = BTreeMap::new();
            for r in &fresh {
                let Some(cookie) = r.set_cookie.iter().find(|c| c.starts_with(&prefix)) else {
                    bail!("a response to a request without cookie has no Set-Cookie {name}");
                };
                issued.entry(r.backend.clone().unwrap_or_default()).or_insert_with(|| cookie.clone());
            }
            ensure!(
                issued.len() == usize::from(BACKENDS),
                "new sessions went to {:?} only, not spread over {BACKENDS} backends",
                issued.keys().collect::<Vec<_>>()
            );
            let (backends, cookies): (Vec<String>, Vec<Option<String>>) =
                issued.iter().map(|(b, c)| (b.clone(), Some(c.clone()))).unzip();
            let pinned = requests(client, cookies, 3, 5)?;
            for r in &pinned {
                ensure!(
                    r.backend.as_deref() == Some(backends[r.cookie].as_str()),
                    "the cookie issued by {} reached {:?}",
                    backends[r.cookie],
                    r.backend
                );
                ensure!(
                    !r.set_cookie.iter().any(|c| c.starts_with(&prefix)),
                    "a pinned request got a new {name} cookie"
                );
            }
            checked.summary = format!(
                "{} requests without cookie: each got Set-Cookie {name}, spread over {}; each backend's cookie \
                 replayed on 3 new connections ({} requests) reached only its backend, without a new cookie",
                fresh.len(),
                backends.join("+"),
                pinned.len()
            );
            checked.cookie = issued.into_iter().next().map(|(b, c)| (c, b));
        }
        Affinity::CookieHashed(name) => {
            let cookies: Vec<Option<String>> = (0..16).map(|i| Some(format!("{name}=s{i}"))).collect();
            let replies = requests(client, cookies.clone(), 2, 3)?;
            let mut owner: BTreeMap<usize, String> = BTreeMap::new();
            for r in &replies {
                let b = r.backend.clone().unwrap_or_default();
                let first = owner.entry(r.cookie).or_insert_with(|| b.clone());
                ensure!(*first == b, "cookie {:?} reached both {first} and {b}", cookies[r.cookie]);
            }
            let spread: BTreeSet<&String> = owner.values().collect();
            ensure!(spread.len() == usize::from(BACKENDS), "16 cookie values all hashed to {spread:?}");
            checked.summary = format!(
                "16 {name} values, each on 2 new connections x 3 requests, each always on one backend; together on {}",
                spread.into_iter().cloned().collect::<Vec<_>>().join("+")
            );
            checked.cookie = cookies[0].clone().map(|c| (c, owner[&0].clone()));
        }
        Affinity::ClientIp => {
            let replies = requests(client, vec![None], 20, 2)?;
            let seen = backends_of(&replies);
            ensure!(seen.len() == 1, "one client's 20 connections reached {seen:?}");
            checked.summary = format!(
                "one client's 20 new connections ({} requests) all reached {}",
                replies.len(),
                seen.into_iter().next().unwrap_or_default()
            );
        }
        Affinity::Spread => {
            let replies = requests(client, vec![None], 20, 2)?;
            let seen = backends_of(&replies);
            ensure!(seen.len() == usize::from(BACKENDS), "20 new connections reached only {seen:?}");
            checked.summary =
                format!("20 new connections ({} requests) spread over {seen:?} (no affinity)", replies.len());
        }
    }
    Ok(checked)
}

/// Checks the warm-up run's counts: every response 200 from a backend, and the affinity held under load.
///
/// # Errors
/// The counts contradict the configuration.
pub fn under_load(config: &Config, checked: &Checked, v: &wrk::Verify) -> anyhow::Result<String> {
    ensure!(v.responses > 0, "no response under load");
    ensure!(v.not_200 == 0, "{} of {} responses under load were not 200", v.not_200, v.responses);
    let served: u64 = v.bodies.values().sum();
    ensure!(served == v.responses, "counted {served} bodies for {} responses", v.responses);
    let seen: BTreeSet<String> = v.bodies.keys().cloned().collect();
    ensure!(
        seen.is_subset(&all_backends()),
        "bodies under load not from this configuration's backends: {:?}",
        v.bodies
    );
    let issued = matches!(config.affinity(), Affinity::CookieIssued(_));
    match (config.affinity(), config.load) {
        (Affinity::Single, _) => ensure!(seen == BTreeSet::from([backend_name(1)]), "direct: bodies {:?}", v.bodies),
        (_, Load::Pinned) => {
            let (_, backend) = checked.cookie.as_ref().context("pinned load without a checked cookie")?;
            ensure!(seen == BTreeSet::from([backend.clone()]), "pinned to {backend}, but bodies {:?}", v.bodies);
        }
        (Affinity::CookieIssued(_), Load::Plain) => {
            ensure!(
                v.set_cookie == v.responses,
                "{} of {} new-session responses had Set-Cookie",
                v.set_cookie,
                v.responses
            );
            ensure!(seen.len() == usize::from(BACKENDS), "new sessions not spread: {:?}", v.bodies);
        }
        (Affinity::ClientIp, _) => ensure!(seen.len() == 1, "one client on several backends: {:?}", v.bodies),
        (Affinity::Spread, _) => ensure!(seen.len() == usize::from(BACKENDS), "not spread: {:?}", v.bodies),
        (Affinity::CookieHashed(_), Load::Plain) => {}
    }
    if !(issued && config.load == Load::Plain) {
        ensure!(v.set_cookie == 0, "{} responses under load set a cookie", v.set_cookie);
    }
    let counts: Vec<String> = v.bodies.iter().map(|(b, n)| format!("{b}={n}")).collect();
    Ok(format!("{} responses, all 200: {}; Set-Cookie on {}", v.responses, counts.join(" "), v.set_cookie))
}

//! The metrics table holds both ways: ARCHITECTURE.md has one row per metric of [`ALL`] and no
//! other, and a scrape of a real admin listener serves exactly the families of [`ALL`], with their
//! types and label names, when every part runs.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::{
    admin::{self, Admin},
    cookie::Keys,
    datapath::{Stats, tcp::Usage},
    model::{AdminState, Backend, BackendId, Catalog, HttpService, Rule, ServiceId, ServiceSpec},
    tcp::user,
};

/// A metric as a table or a scrape shows it: type and label names, by sample name.
type Shape = BTreeMap<String, (String, Vec<String>)>;

fn table() -> Shape {
    ALL.iter()
        .map(|m| (m.name.to_owned(), (m.kind.as_str().to_owned(), m.labels.iter().map(|l| (*l).to_owned()).collect())))
        .collect()
}

/// The rows of ARCHITECTURE.md's metrics table: `| `name` | type | labels, ... | part | meaning |`.
fn documented() -> Shape {
    let doc = include_str!("../../../../ARCHITECTURE.md");
    let section = doc.split("\n## Metrics\n").nth(1).expect("ARCHITECTURE.md must have a Metrics section");
    section
        .lines()
        .skip_while(|l| !l.starts_with("| metric |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let labels = cells[3].split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
            (cells[1].trim_matches('`').to_owned(), (cells[2].to_owned(), labels))
        })
        .collect()
}

/// The families of an exposition: each sample name with its family's type and its label names.
fn served(text: &str) -> Shape {
    let mut types = BTreeMap::new();
    let mut out = Shape::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a TYPE line must name a family and its type");
            types.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, _value) = line.rsplit_once(' ').expect("a sample line must have a value");
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let labels: Vec<String> = labels
                .trim_end_matches('}')
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| pair.split_once('=').expect("a label must be name=\"value\"").0.to_owned())
                .collect();
            // a histogram's samples (`_bucket` with `le`, `_sum`, `_count`) stand for their family
            let histogram = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"));
            let labels: Vec<String> = labels.into_iter().filter(|l| histogram.is_none() || l != "le").collect();
            let family =
                histogram.or_else(|| name.strip_suffix("_total").filter(|f| types.contains_key(*f))).unwrap_or(name);
            let kind = types.get(family).cloned().expect("a sample must follow its family's TYPE line");
            let name = histogram.unwrap_or(name);
            if let Some((_, seen)) = out.insert(name.to_owned(), (kind, labels.clone())) {
                assert_eq!(seen, labels, "every sample of {name} must carry the same labels");
            }
        }
    }
    out
}

#[test]
fn architecture_md_has_a_row_for_every_metric_and_no_other() {
    assert_eq!(documented(), table(), "ARCHITECTURE.md's metrics table must match admin::metrics::ALL");
}

#[test]
fn every_metric_is_named_once() {
    let names: BTreeSet<&str> = ALL.iter().map(|m| m.name).collect();
    assert_eq!(names.len(), ALL.len(), "two metrics of the table share a name");
    for m in ALL {
        let counter = matches!(m.kind, MetricType::Counter);
        assert_eq!(m.name.ends_with("_total"), counter, "{}: counters and only counters end in _total", m.name);
    }
}

/// Every part running: one http service with one backend, the kernel splice, tcp mode in the
/// kernel and in user space.
fn every_part() -> (Sources, Arc<Routing>) {
    let routing = Arc::new(Routing::new(Keys::random()));
    let rule = Rule::Always;
    let spec = ServiceSpec {
        id: ServiceId("web".into()),
        name: "web".into(),
        priority: rule.default_priority(),
        rule,
        cookie: crate::model::CookieSpec::default(),
        strict: false,
        health: crate::model::HealthCheckSpec::default(),
        backoff: crate::model::BackoffSpec::default(),
        splice: crate::model::SpliceSpec::default(),
        tls: crate::model::TlsSpec::default(),
        backend_protocol: crate::model::BackendProtocol::default(),
        proxy_protocol: crate::proxy_protocol::Version::Off,
    };
    let backend = Backend {
        id: BackendId("w1".into()),
        addr: SocketAddr::from(([127, 0, 0, 1], 9)),
        weight: 1,
        admin: AdminState::Active,
    };
    routing.publish(&Catalog { http: vec![HttpService { spec, backends: vec![backend] }], tcp: vec![] });
    let usage = |name| MapUsage { name, used: 1, max: 2 };
    let splice = SpliceSnapshot {
        joined: 1,
        finished: 1,
        aborted: 0,
        refused: 0,
        live: 0,
        redirected_skbs: 3,
        no_peer_skbs: 0,
        maps: [
            usage(sticky_common::maps::SPLICE_PEERS),
            usage(sticky_common::maps::SPLICE_SOCKS),
            usage(sticky_common::maps::SPLICE_BYTES),
        ],
    };
    let tcp = TcpSnapshot {
        kernel: Some(Usage {
            maps: vec![usage(sticky_common::maps::CONNS), usage(sticky_common::maps::AFFINITY)],
            flows_per_backend: BTreeMap::from([(0, 1)]),
            flows_per_backend6: BTreeMap::from([(2, 5)]),
            stats: Stats::default(),
        }),
        services: vec![("db".to_owned(), user::Snapshot::default())],
        backends: vec![crate::tcp::BackendRow {
            service: "db".into(),
            id: "task1".into(),
            addr: "10.0.1.3:5432".into(),
            state: "active",
            path: "user space",
            active: 1,
            connections: Some(2),
            bytes_to_backend: Some(3),
            bytes_to_client: Some(4),
        }],
    };
    let sources = Sources {
        http: Some((routing.clone(), Arc::new(ProxyStats::default()))),
        splice: Some(Box::new(move || splice)),
        tcp: Some(Box::new(move || tcp.clone())),
        tls: Some({
            let resolver =
                crate::tls::resolver::Resolver::new(crate::tls::resolver::UnknownName::Default, Arc::default());
            let leaf = crate::tls::testutil::Ca::new("metrics CA").leaf(&["a.test"]);
            resolver.publish(crate::tls::resolver::Table::new(vec![leaf.loaded("a")]));
            Arc::new(resolver)
        }),
    };
    (sources, routing)
}

#[tokio::test(flavor = "current_thread")]
async fn a_scrape_serves_exactly_the_table() {
    let (sources, routing) = every_part();
    let routes = routing.table_full();
    let in_flight = routes.services[0].backends[0].live.busy();
    let admin = Admin { registry: registry(sources), routing: Some(routing), ..Admin::default() };
    let addr = admin::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), std::sync::Arc::new(admin))
        .await
        .expect("the admin listener must bind a loopback port");
    let scrape = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("the admin listener must accept");
        conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.expect("the request must be sent");
        let mut text = String::new();
        conn.read_to_string(&mut text).await.expect("the answer must be read to its end");
        text
    };
    let text = tokio::time::timeout(Duration::from_secs(10), scrape).await.expect("/metrics must answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer must have a head");
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(served(body), table(), "what /metrics serves must be the table, exactly:\n{body}");
    assert_eq!(
        testkit::prometheus::sample(body, r#"sticky_splice_skbs_total{verdict="redirect"}"#),
        Some(3),
        "values come through"
    );
    assert_eq!(testkit::prometheus::sample(body, r#"sticky_l4_backend_flows6{backend_id="2"}"#), Some(5), "IPv6 flows");
    assert_eq!(testkit::prometheus::sample(body, r#"sticky_l4_backend_flows{backend_id="0"}"#), Some(1));
    let busy = r#"sticky_backend_requests_in_flight{service="web",backend="w1"}"#;
    assert_eq!(testkit::prometheus::sample(body, busy), Some(1), "a request held in flight counts");
    drop(in_flight);
}

/// The `PromQL` expressions of `deploy/`: the alert rules' `expr:` lines and the Grafana dashboard's targets.
fn deploy_expressions() -> Vec<(&'static str, String)> {
    let rules = include_str!("../../../../deploy/prometheus/sticky-alerts.yml");
    let mut out: Vec<(&'static str, String)> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| ("deploy/prometheus/sticky-alerts.yml", e.trim().to_owned()))
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../../deploy/grafana/sticky-dashboard.json"))
            .expect("the Grafana dashboard must be valid JSON");
    let panels = dashboard["panels"].as_array().expect("the dashboard must have panels");
    for target in panels.iter().filter_map(|p| p["targets"].as_array()).flatten() {
        let expr = target["expr"].as_str().expect("every target must have an expr");
        out.push(("deploy/grafana/sticky-dashboard.json", expr.to_owned()));
    }
    out
}

/// Each metric name in `expr`, with the label names its selector (`{...}`) uses.
fn selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("sticky_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = tail[..end].to_owned();
        let mut labels = Vec::new();
        if let Some(body) = tail[end..].strip_prefix('{') {
            let body = &body[..body.find('}').expect("a selector must close")];
            for matcher in body.split(',') {
                let label = matcher.split(['=', '!']).next().unwrap_or_default().trim();
                labels.push(label.to_owned());
            }
        }
        out.push((name, labels));
        rest = &tail[end..];
    }
    out
}

/// The label names of every `by (...)` clause in `expr`.
fn grouped_by(expr: &str) -> Vec<String> {
    expr.split("by (")
        .skip(1)
        .flat_map(|part| part[..part.find(')').expect("a by clause must close")].split(','))
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn the_grafana_dashboard_and_alert_rules_name_only_metrics_and_labels_that_exist() {
    // what Prometheus adds to every series it scrapes
    const TARGET_LABELS: [&str; 2] = ["instance", "job"];
    let metrics = table();
    let expressions = deploy_expressions();
    assert!(expressions.len() >= 20, "the dashboard and the rules must have their expressions: {expressions:?}");
    let mut used = BTreeSet::new();
    for (file, expr) in &expressions {
        let named = selectors(expr);
        assert!(!named.is_empty(), "{file}: `{expr}` names no sticky metric");
        let mut labels_here: BTreeSet<&str> = TARGET_LABELS.into_iter().collect();
        for (name, labels) in &named {
            let (_, known) = metrics.get(name).unwrap_or_else(|| panic!("{file}: `{expr}` names {name}, not a metric"));
            for label in labels {
                assert!(
                    known.contains(label) || TARGET_LABELS.contains(&label.as_str()),
                    "{file}: `{expr}` selects {name} by {label}, not one of its labels {known:?}"
                );
            }
            labels_here.extend(known.iter().map(String::as_str));
            used.insert(name.clone());
        }
        for label in grouped_by(expr) {
            assert!(
                labels_here.contains(label.as_str()),
                "{file}: `{expr}` groups by {label}, which none of its metrics has"
            );
        }
    }
    let rules = include_str!("../../../../deploy/prometheus/sticky-alerts.yml");
    for alert in [
        "StickyBackendDown",
        "StickyAllBackendsDown",
        "StickyRepinStorm",
        "StickyKernelMapNearlyFull",
        "StickyCertificateExpiresSoon",
    ] {
        assert!(rules.contains(&format!("- alert: {alert}\n")), "the rules must have {alert}");
    }
    assert!(used.len() >= 15, "the dashboard should show most metrics, it uses {used:?}");
}

#[test]
fn the_expression_reader_finds_names_selectors_and_groupings() {
    let expr = r#"sum by (service, reason) (rate(sticky_repins_total{instance=~"$i", service!="x"}[5m])) / sticky_up"#;
    assert_eq!(
        selectors(expr),
        vec![
            ("sticky_repins_total".to_owned(), vec!["instance".to_owned(), "service".to_owned()]),
            ("sticky_up".to_owned(), vec![]),
        ]
    );
    assert_eq!(grouped_by(expr), vec!["service".to_owned(), "reason".to_owned()]);
}

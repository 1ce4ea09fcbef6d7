//! The JSON documents say what the dashboard and scripts read: whether writes are taken, where the
//! services come from, each service's settings and each backend's counters and response times.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use serde_json::{Value, json};

use super::*;
use crate::{
    cookie::Keys,
    model::{AdminState, Backend, BackendId, Catalog, HttpService, Rule, ServiceId, ServiceSpec},
};

fn routing() -> Routing {
    let routing = Routing::new(Keys::random());
    let rule = Rule::PathPrefix(vec!["/api".into()]);
    let spec = ServiceSpec {
        id: ServiceId("api".into()),
        name: "api".into(),
        priority: rule.default_priority(),
        rule,
        cookie: CookieSpec {
            name: "api_sticky".into(),
            same_site: Some(SameSite::Lax),
            max_age: Some(Duration::from_secs(3600)),
            secure: Some(true),
            ..CookieSpec::default()
        },
        strict: true,
        health: crate::model::HealthCheckSpec::default(),
        backoff: crate::model::BackoffSpec::default(),
        splice: crate::model::SpliceSpec::default(),
        tls: crate::model::TlsSpec::default(),
        backend_protocol: crate::model::BackendProtocol::default(),
        proxy_protocol: crate::proxy_protocol::Version::Off,
    };
    let backend = |id: &str, port| Backend {
        id: BackendId(id.into()),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        weight: 1,
        admin: AdminState::Active,
    };
    let backends = vec![backend("a1", 8001), backend("a2", 8002)];
    routing.publish(&Catalog { http: vec![HttpService { spec, backends }], tcp: vec![] });
    routing
}

#[test]
fn backends_report_says_writes_source_settings_and_counters() {
    let routing = routing();
    let table = routing.table();
    let a1 = &table.services[0].backends[0].live.stats;
    a1.session();
    a1.response(200);
    a1.response(502);
    a1.connect_error();
    a1.responded_after(Duration::from_millis(3));
    a1.responded_after(Duration::from_millis(30));
    routing.set_draining("api", "a2", true).expect("a2 exists");

    let sources = Sources { source: Source::File, ..Sources::default() };
    let doc = serde_json::to_value(report(Some(&routing), Writes::Token, &sources)).expect("the report serializes");
    assert_eq!(doc["writes"], "token");
    assert_eq!(doc["source"], "file");
    assert_eq!(doc["latency_buckets"].as_array().map(Vec::len), Some(LATENCY_BUCKETS.len()));
    let s = &doc["services"][0];
    assert_eq!((s["name"].clone(), s["mode"].clone(), s["strict"].clone()), (json!("api"), json!("http"), json!(true)));
    assert_eq!(s["rule"], "PathPrefix(`/api`)");
    assert_eq!(
        s["cookie_settings"],
        json!({"enabled": true, "path": "/", "domain": null, "secure": "always", "httponly": true,
               "samesite": "lax", "max_age_seconds": 3600})
    );
    let a1 = &s["backends"][0];
    assert_eq!((a1["sessions"].clone(), a1["requests"].clone(), a1["errors"].clone()), (json!(1), json!(2), json!(2)));
    let counts: Vec<u64> = a1["latency"]["counts"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
    assert_eq!(counts.len(), LATENCY_BUCKETS.len() + 1, "a count per bucket and +Inf");
    assert_eq!((counts[2], counts[5], counts.iter().sum::<u64>()), (1, 1, 2), "3 ms and 30 ms: {counts:?}");
    assert_eq!(s["backends"][1]["state"], "draining");
}

#[test]
fn overview_without_an_http_part_still_answers() {
    let doc = serde_json::to_value(overview(None, Writes::Disabled, &Sources::default())).expect("serializes");
    assert_eq!(doc["writes"], "disabled");
    assert_eq!(doc["source"], "flags");
    assert_eq!(doc["services"], json!([]));
    assert_eq!((doc["proxy"].clone(), doc["tcp"].clone()), (Value::Null, Value::Null));

    let routing = routing();
    let sources = Sources { proxy: Some(Arc::new(ProxyStats::default())), ..Sources::default() };
    let doc = serde_json::to_value(overview(Some(&routing), Writes::Open, &sources)).expect("serializes");
    assert_eq!(doc["proxy"]["connections_active"], 0);
    assert_eq!(doc["services"][0]["backends"].as_array().map(Vec::len), Some(2));
}

#[test]
fn overview_has_discovery_with_docker_and_open_connections_per_backend() {
    let routing = routing();
    let doc = serde_json::to_value(overview(Some(&routing), Writes::Open, &Sources::default())).expect("serializes");
    assert_eq!(doc["discovery"], Value::Null, "no --docker: no discovery part");
    assert_eq!(doc["services"][0]["backends"][0]["open_connections"], 0);
    let table = routing.table_full();
    let held = table.services[0].backends[0].live.stats.open();
    let doc = serde_json::to_value(overview(Some(&routing), Writes::Open, &Sources::default())).expect("serializes");
    assert_eq!(doc["services"][0]["backends"][0]["open_connections"], 1, "a held exchange counts");
    drop(held);

    let status = Arc::new(crate::discovery::status::Status::default());
    status.listed(vec![("web".into(), "no port: add sticky.port".into())], vec![("web".into(), "traefik.x".into())]);
    let sources = Sources { discovery: Some(status), ..Sources::default() };
    let doc = serde_json::to_value(overview(None, Writes::Open, &sources)).expect("serializes");
    assert_eq!(doc["discovery"]["docker_api"], "up");
    assert_eq!(doc["discovery"]["problems"], json!([{ "service": "web", "problem": "no port: add sticky.port" }]));
    assert_eq!(doc["discovery"]["ignored_labels"][0]["label"], "traefik.x");
    assert!(doc["discovery"]["last_contact_unix"].as_u64().is_some());
}

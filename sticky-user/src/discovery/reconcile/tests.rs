//! One Swarm listing into one catalog: networks, ports, task states, identities, labels, tcp services.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::{discovery::docker::EndpointMode, model::TcpPath};

/// `--affinity-timeout` in these listings.
const AFFINITY: Duration = Duration::from_secs(3 * 3600);

const NET: &str = "netwhoami";
const OTHER: &str = "netother";

fn service(id: &str, name: &str, labels: &[(&str, &str)], networks: &[&str]) -> ServiceInfo {
    ServiceInfo {
        id: id.into(),
        name: name.into(),
        labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
        endpoint_mode: EndpointMode::Vip,
        network_ids: networks.iter().map(|n| (*n).to_owned()).collect(),
        has_healthcheck: false,
    }
}

fn net_name(id: &str) -> &'static str {
    match id {
        NET => "whoaminet",
        OTHER => "othernet",
        _ => "elsewhere",
    }
}

fn task(id: &str, service: &str, slot: Option<u64>, state: &str, desired: &str, nets: &[(&str, &str)]) -> TaskInfo {
    TaskInfo {
        id: id.into(),
        service_id: service.into(),
        slot,
        node_id: Some("node1".into()),
        state: state.into(),
        desired_state: desired.into(),
        container_id: Some(format!("c-{id}")),
        addresses: nets.iter().map(|(n, ip)| (net_name(n).to_owned(), ip.parse().unwrap())).collect(),
        network_names: nets.iter().map(|(n, _)| ((*n).to_owned(), net_name(n).to_owned())).collect::<HashMap<_, _>>(),
    }
}

const SEED: &[(&str, &str)] = &[
    ("traefik.docker.network", "whoaminet"),
    ("traefik.port", "8000"),
    ("traefik.frontend.rule", "PathPrefix:/"),
    ("traefik.backend.loadbalancer.stickiness", "true"),
];

fn on_whoaminet() -> Placement {
    Placement::Task([NET.to_owned()].into())
}

fn addrs(entry: &HttpService) -> Vec<(String, String, AdminState)> {
    entry.backends.iter().map(|b| (b.id.0.to_string(), b.addr.to_string(), b.admin)).collect()
}

#[test]
fn seed_recipe_gives_running_tasks_on_the_labelled_network() {
    let services = [service("svc1", "whoami-service", SEED, &[NET])];
    let tasks = [
        task("t1", "svc1", Some(1), "running", "running", &[(NET, "10.0.1.3")]),
        task("t2", "svc1", Some(2), "running", "running", &[(NET, "10.0.1.4")]),
        task("t3", "svc1", Some(3), "running", "running", &[(NET, "10.0.1.5")]),
        task("t0", "svc1", Some(1), "shutdown", "shutdown", &[(NET, "10.0.1.2")]),
        task("other", "svc9", Some(1), "running", "running", &[(NET, "10.0.1.9")]),
    ];
    let out = reconcile(&services, &tasks, &on_whoaminet(), AFFINITY);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert!(out.catalog.tcp.is_empty());
    let [entry] = out.catalog.http.as_slice() else { panic!("one service: {:?}", out.catalog) };
    assert_eq!(entry.spec.id.0.as_ref(), "svc1");
    assert_eq!(entry.spec.cookie.name, "_a49bc", "Traefik's name, so migrating clients keep their cookie");
    assert!(entry.spec.cookie.enabled && entry.spec.cookie.legacy_traefik);
    assert!(entry.spec.rule.matches(Some("anything"), "/x"));
    assert_eq!(
        addrs(entry),
        vec![
            ("t1".into(), "10.0.1.3:8000".into(), AdminState::Active),
            ("t2".into(), "10.0.1.4:8000".into(), AdminState::Active),
            ("t3".into(), "10.0.1.5:8000".into(), AdminState::Active),
        ]
    );
}

#[test]
fn shutting_down_tasks_drain_and_starting_ones_wait() {
    let mut healthchecked = service("svc1", "web", &[("sticky.port", "80")], &[NET]);
    healthchecked.has_healthcheck = true;
    let tasks = [
        task("a", "svc1", Some(1), "running", "shutdown", &[(NET, "10.0.1.3")]),
        task("b", "svc1", Some(2), "running", "remove", &[(NET, "10.0.1.4")]),
        // Swarm holds a task with a healthcheck in `starting` until it is healthy
        task("c", "svc1", Some(3), "starting", "running", &[(NET, "10.0.1.5")]),
        task("d", "svc1", Some(4), "preparing", "running", &[(NET, "10.0.1.6")]),
        task("e", "svc1", Some(5), "running", "running", &[(NET, "10.0.1.7")]),
        task("f", "svc1", Some(6), "complete", "shutdown", &[(NET, "10.0.1.8")]),
    ];
    let out = reconcile(&[healthchecked], &tasks, &on_whoaminet(), AFFINITY);
    assert_eq!(
        addrs(&out.catalog.http[0]),
        vec![
            ("a".into(), "10.0.1.3:80".into(), AdminState::Draining),
            ("b".into(), "10.0.1.4:80".into(), AdminState::Draining),
            ("e".into(), "10.0.1.7:80".into(), AdminState::Active),
        ]
    );
}

#[test]
fn slot_identity_hands_the_slot_to_the_replacement() {
    let labels = [("sticky.port", "80"), ("sticky.cookie.identity", "slot")];
    let old_running = task("old", "svc1", Some(1), "running", "shutdown", &[(NET, "10.0.1.3")]);
    let new_starting = task("new", "svc1", Some(1), "starting", "running", &[(NET, "10.0.1.9")]);
    let other = task("x", "svc1", Some(2), "running", "running", &[(NET, "10.0.1.4")]);
    let svc = [service("svc1", "web", &labels, &[NET])];
    // stop-first: the old task drains under the slot's name until the new one runs
    let out = reconcile(&svc, &[old_running.clone(), new_starting.clone(), other.clone()], &on_whoaminet(), AFFINITY);
    assert_eq!(
        addrs(&out.catalog.http[0]),
        vec![
            ("slot-1".into(), "10.0.1.3:80".into(), AdminState::Draining),
            ("slot-2".into(), "10.0.1.4:80".into(), AdminState::Active),
        ]
    );
    // start-first: both run; the replacement takes the slot, so the slot's cookies now reach it
    let new_running = TaskInfo { state: "running".into(), ..new_starting };
    let out = reconcile(&svc, &[old_running, new_running, other], &on_whoaminet(), AFFINITY);
    assert_eq!(addrs(&out.catalog.http[0])[0], ("slot-1".into(), "10.0.1.9:80".into(), AdminState::Active));
    // global services have no slot: the node names the task
    let global = TaskInfo { slot: None, ..task("g", "svc1", None, "running", "running", &[(NET, "10.0.1.5")]) };
    let out = reconcile(&svc, &[global], &on_whoaminet(), AFFINITY);
    assert_eq!(out.catalog.http[0].backends[0].id.0.as_ref(), "node-node1");
}

#[test]
fn network_is_the_label_or_the_one_shared_with_sticky() {
    let tasks = [task("t1", "svc1", Some(1), "running", "running", &[(NET, "10.0.1.3"), (OTHER, "10.0.2.3")])];
    let both = |labels: &[(&str, &str)]| [service("svc1", "web", labels, &[NET, OTHER])];
    let port = [("sticky.port", "80")];

    // sticky on whoaminet only: the shared one
    let out = reconcile(&both(&port), &tasks, &on_whoaminet(), AFFINITY);
    assert_eq!(out.catalog.http[0].backends[0].addr.to_string(), "10.0.1.3:80");
    // sticky on both: ambiguous, named in the problem
    let on_both = Placement::Task([NET.to_owned(), OTHER.to_owned()].into());
    let out = reconcile(&both(&port), &tasks, &on_both, AFFINITY);
    assert!(out.catalog.http.is_empty());
    assert!(
        out.problems[0].reason.to_string().contains("several networks")
            && out.problems[0].reason.to_string().contains("othernet")
    );
    // a label settles it (by name)
    let out = reconcile(&both(&[("sticky.port", "80"), ("sticky.network", "othernet")]), &tasks, &on_both, AFFINITY);
    assert_eq!(out.catalog.http[0].backends[0].addr.to_string(), "10.0.2.3:80");
    // a labelled network that sticky is not on
    let out =
        reconcile(&both(&[("sticky.port", "80"), ("sticky.network", "othernet")]), &tasks, &on_whoaminet(), AFFINITY);
    assert!(
        out.problems[0].reason.to_string().contains("sticky is not attached to network othernet"),
        "{:?}",
        out.problems
    );
    // a labelled network the service is not on
    let out = reconcile(&both(&[("sticky.port", "80"), ("sticky.network", "nope")]), &tasks, &on_both, AFFINITY);
    assert!(out.problems[0].reason.to_string().contains("network nope"), "{:?}", out.problems);
    // no shared network
    let out = reconcile(&[service("svc1", "web", &port, &[OTHER])], &tasks, &on_whoaminet(), AFFINITY);
    assert!(out.problems[0].reason.to_string().contains("shares no network"), "{:?}", out.problems);
    // sticky outside the Swarm: the service's only network, or a problem
    let out = reconcile(&[service("svc1", "web", &port, &[OTHER])], &tasks, &Placement::Elsewhere, AFFINITY);
    assert_eq!(out.catalog.http[0].backends[0].addr.to_string(), "10.0.2.3:80");
    assert!(!reconcile(&both(&port), &tasks, &Placement::Elsewhere, AFFINITY).problems.is_empty());
}

#[test]
fn a_broken_service_does_not_affect_the_others() {
    let services = [
        service("s1", "bad", &[("sticky.port", "eighty")], &[NET]),
        service("s2", "noport", &[("sticky.enable", "true")], &[NET]),
        service("s3", "good", &[("sticky.port", "80"), ("sticky.frobnicate", "1")], &[NET]),
        service("s4", "strip", &[("traefik.port", "80"), ("traefik.frontend.rule", "PathPrefixStrip:/api")], &[NET]),
        service("s5", "plain", &[("com.example.team", "web")], &[NET]),
        service("s6", "samesite", &[("sticky.port", "80"), ("sticky.cookie.samesite", "none")], &[NET]),
    ];
    let tasks = [task("t", "s3", Some(1), "running", "running", &[(NET, "10.0.1.3")])];
    let out = reconcile(&services, &tasks, &on_whoaminet(), AFFINITY);
    let names: Vec<&str> = out.catalog.http.iter().map(|s| s.spec.name.as_str()).collect();
    assert_eq!(names, ["good"]);
    let problems: Vec<(&str, String)> =
        out.problems.iter().map(|p| (p.service.as_str(), p.reason.to_string())).collect();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(problems[0].0 == "bad" && problems[0].1.contains("sticky.port"));
    assert!(problems[1].0 == "noport" && problems[1].1.contains("no port"));
    assert!(problems[2].0 == "samesite" && problems[2].1.contains("SameSite=None"));
    assert!(problems[3].0 == "strip" && problems[3].1.contains("PathPrefixStrip"));
    assert_eq!(out.ignored, vec![("s3".into(), "good".into(), "sticky.frobnicate".into())]);
}

#[test]
fn sticky_and_traefik_v2_labels_route_by_host() {
    let services = [
        service("s1", "api", &[("sticky.port", "8000"), ("sticky.rule", "Host(`api.example`)")], &[NET]),
        service(
            "s2",
            "shop",
            &[
                ("traefik.http.routers.shop.rule", "Host(`shop.example`)"),
                ("traefik.http.services.shop.loadbalancer.server.port", "8000"),
                ("traefik.http.services.shop.loadbalancer.sticky.cookie.name", "shop_session"),
                ("sticky.splice", "true"),
                ("sticky.splice.upgrades", "false"),
            ],
            &[NET],
        ),
        service("s3", "plain-traefik", &[("traefik.port", "8000")], &[NET]),
    ];
    let out = reconcile(&services, &[], &on_whoaminet(), AFFINITY);
    let by_name: BTreeMap<&str, &ServiceSpec> =
        out.catalog.http.iter().map(|s| (s.spec.name.as_str(), &s.spec)).collect();
    assert!(by_name["api"].rule.matches(Some("api.example"), "/") && !by_name["api"].rule.matches(Some("x"), "/"));
    assert_eq!(by_name["api"].cookie.name, "sticky");
    assert!(!by_name["api"].cookie.legacy_traefik, "no Traefik labels: no Traefik cookies to honour");
    assert!(by_name["shop"].rule.matches(Some("shop.example"), "/"));
    assert_eq!(by_name["shop"].cookie.name, "shop_session");
    assert_eq!(by_name["shop"].splice, SpliceSpec { pinned: true, upgrades: false });
    assert_eq!(by_name["api"].splice, SpliceSpec::default(), "no splice labels: the defaults");
    assert!(by_name["shop"].priority > by_name["plain-traefik"].priority);
    assert!(!by_name["plain-traefik"].cookie.enabled, "Traefik labels without stickiness do not pin");
}

#[test]
fn tcp_services_get_active_ipv4_and_ipv6_tasks_and_their_own_port() {
    let tcp = [
        ("sticky.mode", "tcp"),
        ("sticky.port", "5432"),
        ("sticky.listen.port", "15432"),
        ("sticky.affinity.timeout", "10m"),
    ];
    let services = [
        service("s1", "db", &tcp, &[NET]),
        service("s2", "db-copy", &tcp, &[NET]),
        service(
            "s3",
            "mqtt",
            &[("sticky.mode", "tcp"), ("sticky.port", "1883"), ("sticky.tcp.path", "kernel")],
            &[NET],
        ),
    ];
    let tasks = [
        task("a", "s1", Some(1), "running", "running", &[(NET, "10.0.1.3")]),
        task("b", "s1", Some(2), "running", "shutdown", &[(NET, "10.0.1.4")]),
        task("c", "s1", Some(3), "running", "running", &[(NET, "fd00::5")]),
    ];
    let out = reconcile(&services, &tasks, &on_whoaminet(), AFFINITY);
    assert!(out.catalog.http.is_empty());
    assert_eq!(
        out.catalog.tcp,
        vec![
            TcpService {
                id: ServiceId("s1".into()),
                name: "db".into(),
                vip: "0.0.0.0:15432".parse().unwrap(),
                backends: vec!["10.0.1.3:5432".parse().unwrap(), "[fd00::5]:5432".parse().unwrap()],
                affinity_timeout: Duration::from_secs(600),
                proxy_protocol: crate::proxy_protocol::Version::Off,
                members: vec![
                    TcpMember { id: "a".into(), addr: "10.0.1.3:5432".parse().unwrap(), draining: false },
                    TcpMember { id: "b".into(), addr: "10.0.1.4:5432".parse().unwrap(), draining: true },
                    TcpMember { id: "c".into(), addr: "[fd00::5]:5432".parse().unwrap(), draining: false },
                ],
                path: TcpPath::User,
            },
            TcpService {
                id: ServiceId("s3".into()),
                name: "mqtt".into(),
                vip: "0.0.0.0:1883".parse().unwrap(),
                backends: vec![],
                affinity_timeout: AFFINITY,
                proxy_protocol: crate::proxy_protocol::Version::Off,
                members: vec![],
                path: TcpPath::Kernel,
            },
        ]
    );
    assert_eq!(out.problems.len(), 1);
    assert!(out.problems[0].service == "db-copy" && out.problems[0].reason.to_string().contains("15432"));
}

#[test]
fn equal_listings_give_equal_outcomes_in_any_order() {
    let services = vec![service("s2", "b", SEED, &[NET]), service("s1", "a", SEED, &[NET])];
    let tasks = vec![
        task("t2", "s1", Some(2), "running", "running", &[(NET, "10.0.1.4")]),
        task("t1", "s1", Some(1), "running", "running", &[(NET, "10.0.1.3")]),
        task("t3", "s2", Some(1), "running", "running", &[(NET, "10.0.1.5")]),
    ];
    let a = reconcile(&services, &tasks, &on_whoaminet(), AFFINITY);
    let (mut rs, mut rt) = (services.clone(), tasks.clone());
    rs.reverse();
    rt.reverse();
    assert_eq!(a, reconcile(&rs, &rt, &on_whoaminet(), AFFINITY));
    assert_eq!(a.catalog.http[0].spec.name, "a");
}

#[test]
fn sticky_finds_its_own_networks_through_its_task() {
    let mine = task("me", "lb", None, "running", "running", &[(NET, "10.0.1.2"), (OTHER, "10.0.2.2")]);
    let tasks = [task("x", "s", Some(1), "running", "running", &[(NET, "10.0.1.3")]), mine];
    assert_eq!(placement(&tasks, Some("c-me")), Placement::Task([NET.to_owned(), OTHER.to_owned()].into()));
    assert_eq!(placement(&tasks, Some("c-unknown")), Placement::Elsewhere);
    assert_eq!(placement(&tasks, None), Placement::Elsewhere);
}

#[test]
fn label_options_are_validated_like_flags() {
    let labels = [("sticky.port", "80"), ("sticky.healthcheck.path", "/health"), ("sticky.healthcheck.interval", "0")];
    let out = reconcile(&[service("svc1", "web", &labels, &[NET])], &[], &on_whoaminet(), AFFINITY);
    assert!(out.catalog.http.is_empty(), "a zero health interval is refused, as --health-interval=0 is");
    let [problem] = out.problems.as_slice() else { panic!("one problem must be reported: {:?}", out.problems) };
    assert_eq!(problem.reason.to_string(), "health.interval: must be longer than 0");
}

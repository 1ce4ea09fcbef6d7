use std::sync::Mutex;

use tokio::task::JoinHandle;
use tracing::Level;

use super::*;
use crate::tls::{
    acme::issue::{Issued, RequestError},
    challenge::{Answer, Kind},
    reload::Reloader,
    resolver::{Resolver, UnknownName},
    source::Source,
    testutil::{Ca, Logs, now},
};

/// The CA of the fake issuer: "the CA said no".
#[derive(Debug, thiserror::Error)]
#[error("the fake CA refused the order")]
struct Refused;

/// What the fake issuer saw.
#[derive(Debug, Default)]
struct Seen {
    /// Clock time at each call.
    calls: Vec<i64>,
    /// `not_before` of each certificate issued.
    issued: Vec<i64>,
    /// Whether the peer instance served the answer once the order had settled.
    peer_served: Vec<bool>,
}

/// An issuer answering an HTTP-01 challenge through `Answers` like the real client, then issuing from a
/// test CA for `lifetime` seconds; it refuses its first `refuse` orders.
#[derive(Clone)]
struct Fake {
    ca: Arc<Ca>,
    clock: Clock,
    lifetime: i64,
    refuse: usize,
    seen: Arc<Mutex<Seen>>,
    peer: Arc<Mutex<Option<Arc<Challenges>>>>,
}

impl Fake {
    fn new(ca: &Arc<Ca>, clock: &Clock, lifetime: i64, refuse: usize) -> Self {
        Self { ca: ca.clone(), clock: clock.clone(), lifetime, refuse, seen: Arc::default(), peer: Arc::default() }
    }

    fn calls(&self) -> Vec<i64> {
        self.seen.lock().expect("not poisoned").calls.clone()
    }
}

impl Issuer for Fake {
    type Error = Refused;

    async fn issue(&self, request: &Request, answers: &Answers) -> Result<Issued, Refused> {
        let n = {
            let mut seen = self.seen.lock().expect("not poisoned");
            seen.calls.push((self.clock)());
            seen.calls.len()
        };
        let token = format!("token{n}");
        let answer = Answer { kind: Kind::Http01, id: token.clone(), key_authorization: format!("{token}.thumb") };
        answers.publish(answer).await.expect("publishing an answer must work");
        answers.settle().await;
        let peer = self.peer.lock().expect("not poisoned").clone();
        if let Some(peer) = peer {
            let served = peer.http01(&format!("/.well-known/acme-challenge/{token}")).is_some();
            self.seen.lock().expect("not poisoned").peer_served.push(served);
        }
        answers.withdraw(Kind::Http01, token).await;
        if n <= self.refuse {
            return Err(Refused);
        }
        let now = (self.clock)();
        let names: Vec<&str> = request.names().iter().map(String::as_str).collect();
        let leaf = self.ca.leaf_valid(&names, now, now + self.lifetime);
        self.seen.lock().expect("not poisoned").issued.push(now);
        Ok(Issued { chain_pem: leaf.chain_pem, key_pem: leaf.key_pem })
    }
}

/// Seconds since the epoch on paused tokio time.
fn paused_clock() -> Clock {
    let base = now();
    let start = tokio::time::Instant::now();
    Arc::new(move || base + i64::try_from(start.elapsed().as_secs()).expect("the test runs less than forever"))
}

struct Instance {
    challenges: Arc<Challenges>,
    resolver: Arc<Resolver>,
    role: watch::Receiver<Role>,
    requests: Arc<watch::Sender<Vec<Request>>>,
    manager: JoinHandle<()>,
    reloader: JoinHandle<()>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.manager.abort();
        self.reloader.abort();
    }
}

fn settings(holder: &str) -> Settings {
    Settings {
        holder: holder.to_owned(),
        sync_every: Duration::from_secs(1),
        propagation: Duration::from_secs(2),
        lead_retry: Duration::from_secs(10),
        recheck: Duration::from_secs(3600),
        backoff: Backoff::default(),
    }
}

fn start(dir: &std::path::Path, holder: &str, issuer: Fake, clock: &Clock) -> Instance {
    let storage = Storage::open(dir).expect("the ACME directory must open");
    let challenges = Arc::new(Challenges::default());
    let resolver = Arc::new(Resolver::new(UnknownName::Reject, challenges.clone()));
    let reloader = Reloader::start(vec![Source::Dir(storage.certs_dir())], resolver.clone())
        .expect("the certificate directory must load");
    let manager = Manager::new(issuer, storage, challenges.clone(), reloader.handle(), settings(holder), clock.clone());
    Instance {
        challenges,
        resolver,
        role: manager.role(),
        requests: manager.requests(),
        manager: tokio::spawn(manager.run()),
        reloader: tokio::spawn(reloader.run(Duration::from_secs(2))),
    }
}

/// Waits (paused time, so instantly) until `done`, for at most `hours` of test time.
async fn until(what: &str, hours: u64, done: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(hours * 3600), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} must happen within {hours} h of test time"));
}

async fn role(instance: &mut Instance, want: impl Fn(&Role) -> bool) {
    tokio::time::timeout(Duration::from_secs(600), instance.role.wait_for(want))
        .await
        .expect("the role must settle within 10 minutes")
        .expect("the manager must be running");
}

fn request() -> Request {
    Request::new(&["a.example", "www.a.example"], Kind::Http01).expect("a valid request")
}

const DAYS_90: i64 = 90 * 86_400;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn two_instances_one_orders_the_other_serves_its_answers_and_its_certificate() {
    let (logs, _guard) = Logs::capture();
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let clock = paused_clock();
    let ca = Arc::new(Ca::new("ca"));
    let fake_a = Fake::new(&ca, &clock, DAYS_90, 0);
    let fake_b = Fake::new(&ca, &clock, DAYS_90, 0);

    let mut a = start(tmp.path(), "a", fake_a.clone(), &clock);
    role(&mut a, |r| *r == Role::Leader).await;
    let mut b = start(tmp.path(), "b", fake_b.clone(), &clock);
    role(&mut b, |r| *r == Role::Follower { leader: Some("a".into()) }).await;
    *fake_a.peer.lock().expect("not poisoned") = Some(b.challenges.clone());

    // both are told the same (from the same labels); only the leader orders
    a.requests.send_replace(vec![request()]);
    b.requests.send_replace(vec![request()]);
    until("b serving the certificate a ordered", 1, || b.resolver.table().covers("www.a.example")).await;
    assert!(a.resolver.table().covers("a.example"), "the leader serves it too");
    let peer_served = fake_a.seen.lock().expect("not poisoned").peer_served.clone();
    assert_eq!(peer_served, vec![true], "the follower must serve the leader's answer before the CA asks");

    // two hours later (past the leader's hourly recheck): still one order, none from the follower, no
    // answer left behind
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    assert_eq!(fake_a.calls().len(), 1, "a valid certificate must not be ordered again");
    assert_eq!(fake_b.calls(), Vec::<i64>::new(), "a follower must never order");
    assert!(a.challenges.is_empty() && b.challenges.is_empty(), "withdrawn answers must be gone everywhere");
    assert_eq!(logs.count(Level::INFO, "acme: certificate issued"), 1, "{:?}", logs.lines());
    assert_eq!(logs.count(Level::INFO, "acme: this instance orders"), 1, "{:?}", logs.lines());
    assert_eq!(logs.count(Level::INFO, "acme: another instance orders"), 1, "{:?}", logs.lines());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_follower_takes_over_when_the_leader_stops_without_ordering_again() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let clock = paused_clock();
    let ca = Arc::new(Ca::new("ca"));
    let fake_a = Fake::new(&ca, &clock, DAYS_90, 0);
    let fake_b = Fake::new(&ca, &clock, DAYS_90, 0);
    let mut a = start(tmp.path(), "a", fake_a.clone(), &clock);
    role(&mut a, |r| *r == Role::Leader).await;
    let mut b = start(tmp.path(), "b", fake_b.clone(), &clock);
    role(&mut b, |r| matches!(r, Role::Follower { .. })).await;
    a.requests.send_replace(vec![request()]);
    b.requests.send_replace(vec![request()]);
    until("b serving the certificate", 1, || b.resolver.table().covers("a.example")).await;

    drop(a);
    let started = tokio::time::Instant::now();
    role(&mut b, |r| *r == Role::Leader).await;
    assert!(started.elapsed() <= Duration::from_secs(10), "takeover must come within one lead retry");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(fake_b.calls(), Vec::<i64>::new(), "the new leader must keep the valid certificate it found");
    assert_eq!(fake_a.calls().len(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_certificate_is_renewed_at_two_thirds_of_its_lifetime() {
    let (logs, _guard) = Logs::capture();
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let clock = paused_clock();
    let fake = Fake::new(&Arc::new(Ca::new("ca")), &clock, 900, 0);
    let a = start(tmp.path(), "a", fake.clone(), &clock);
    a.requests.send_replace(vec![request()]);
    until("a renewal", 1, || fake.calls().len() >= 2).await;
    let (renewed_at, due) = {
        let seen = fake.seen.lock().expect("not poisoned");
        (seen.calls[1], seen.issued[0] + 600)
    };
    assert!((due..=due + 1).contains(&renewed_at), "renewal at {renewed_at}, due at {due} (2/3 of 900 s)");
    until("the renewal's log line", 1, || logs.count(Level::INFO, "acme: certificate renewed") == 1).await;
    assert_eq!(logs.count(Level::INFO, "acme: certificate issued"), 1, "{:?}", logs.lines());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failed_orders_back_off_doubling_with_one_line_each() {
    let (logs, _guard) = Logs::capture();
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let clock = paused_clock();
    let fake = Fake::new(&Arc::new(Ca::new("ca")), &clock, DAYS_90, 3);
    let a = start(tmp.path(), "a", fake.clone(), &clock);
    a.requests.send_replace(vec![request()]);
    until("the fourth attempt", 3, || fake.calls().len() >= 4).await;
    until("the issued certificate", 1, || a.resolver.table().covers("a.example")).await;
    let calls = fake.calls();
    let gaps: Vec<i64> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    // each attempt spends 2 s waiting for propagation before it fails; then 5, 10, 20 minutes
    assert_eq!(gaps, vec![302, 602, 1202], "attempts at {calls:?}");
    assert_eq!(logs.count(Level::WARN, "acme: certificate order failed"), 3, "{:?}", logs.lines());
    assert_eq!(logs.count(Level::INFO, "acme: certificate issued"), 1, "{:?}", logs.lines());
    assert_eq!(fake.calls().len(), 4, "no attempt after the success");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_request_for_new_names_is_ordered_at_once() {
    let tmp = tempfile::tempdir().expect("a temporary directory must be creatable");
    let clock = paused_clock();
    let fake = Fake::new(&Arc::new(Ca::new("ca")), &clock, DAYS_90, 0);
    let a = start(tmp.path(), "a", fake.clone(), &clock);
    a.requests.send_replace(vec![request()]);
    until("the first certificate", 1, || a.resolver.table().covers("a.example")).await;
    // a label adds a name: the stored certificate no longer matches, so it is replaced
    let wider = Request::new(&["a.example", "www.a.example", "api.a.example"], Kind::Http01).expect("valid");
    a.requests.send_replace(vec![wider]);
    until("the wider certificate", 1, || a.resolver.table().covers("api.a.example")).await;
    assert_eq!(fake.calls().len(), 2);
}

#[test]
fn requests_are_normalized_and_wildcards_refused() {
    let r = Request::new(&["A.Example.", "a.example", " www.a.example "], Kind::TlsAlpn01).expect("valid names");
    assert_eq!(r.names(), ["a.example", "www.a.example"]);
    assert_eq!(r.main(), "a.example");
    assert!(r.matches(&["www.a.example".into(), "a.example".into()]), "order does not matter");
    assert!(!r.matches(&["a.example".into()]));
    assert!(matches!(Request::new(&["*.a.example"], Kind::Http01), Err(RequestError::Wildcard { .. })));
    assert!(matches!(Request::new::<&str>(&[], Kind::Http01), Err(RequestError::NoName)));
    assert!(matches!(Request::new(&["a b"], Kind::Http01), Err(RequestError::Name { .. })));
}

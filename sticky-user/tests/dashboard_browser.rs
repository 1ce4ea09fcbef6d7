//! The admin dashboard in a real browser: headless Chromium driven by chromedriver over W3C
//! WebDriver (plain JSON over HTTP on loopback). A real `sticky run` with three whoami backends gets
//! requests; the page must load without a console error, show each backend's sessions as the
//! requests made them, and drain a backend through its button (the page then shows it draining and
//! `/api/backends` agrees). The screenshot is saved as a test artifact
//! (`target/tmp/dashboard.png`; `STICKY_DOCS_SCREENSHOT=1` also writes `docs/dashboard.png`).
//!
//! Chromium loads only the admin's loopback URL: background networking, component updates and
//! sync are off, and every host name but loopback resolves to nothing. Every wait is bounded;
//! chromedriver and Chromium run in a process group of their own, killed on drop (also when the
//! test fails). Without chromium or chromedriver the test fails, saying how to install them
//! (`cargo xtask setup` does).

mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use base64::Engine as _;
use common::{Proc, TempDir, free_port, get_ok, sticky, sticky_args, who, whoami};
use serde_json::{Value, json};
use testkit::{ChildGuard, http::Client, wait};

const CHROMIUM: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromium-browser"];
const CHROMEDRIVER: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];

/// How long one WebDriver command may take (a new session starts a browser on a busy machine).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the page may take to show what the test waits for (it polls every second).
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

fn first_existing(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// One browser at a time: two on a 2-core machine make every wait slower than it needs to be.
static BROWSER: Mutex<()> = Mutex::new(());

/// chromedriver in a process group of its own, the browser it starts inside it; the whole group is
/// killed on drop.
struct Driver {
    child: ChildGuard,
    addr: SocketAddr,
    profile: TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver's Chromium processes share its process group: end them all, then reap it
        let _ =
            Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).stderr(Stdio::null()).status();
        self.child.kill();
    }
}

impl Driver {
    fn start(log: &Path) -> Self {
        let driver = first_existing(CHROMEDRIVER).unwrap_or_else(|| {
            panic!(
                "chromedriver is missing (looked for {CHROMEDRIVER:?}): the dashboard test needs Debian's chromium and \
                 chromium-driver; run `cargo xtask setup` or `apt-get install -y chromium chromium-driver`"
            )
        });
        assert!(
            first_existing(CHROMIUM).is_some(),
            "chromium is missing (looked for {CHROMIUM:?}): run `cargo xtask setup` or `apt-get install -y chromium chromium-driver`"
        );
        for _ in 0..5 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let mut cmd = Command::new(&driver);
            cmd.args([format!("--port={}", addr.port()), format!("--log-path={}", log.display())])
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let mut driver = Self { child: ChildGuard::spawn(&mut cmd), addr, profile: TempDir::new("chromium") };
            let ready = wait::until(Duration::from_secs(10), || {
                driver.child.is_running()
                    && call(addr, "GET", "/status", None).is_ok_and(|v| v["value"]["ready"] == true)
            });
            if ready {
                return driver;
            }
        }
        panic!("chromedriver did not become ready within 5 attempts (log: {})", log.display());
    }

    /// A headless Chromium session that may reach loopback only.
    fn session(&self) -> Session<'_> {
        let profile = self.profile.path().display().to_string();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--disable-breakpad",
            "--metrics-recording-only",
            "--safebrowsing-disable-auto-update",
            "--dns-prefetch-disable",
            "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication,DialMediaRouteProvider,InterestFeedContentSuggestions",
            // nothing but loopback resolves: a stray request cannot leave the machine
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
            "--window-size=1400,760",
            &format!("--user-data-dir={profile}"),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": first_existing(CHROMIUM).map(|p| p.display().to_string()), "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let created =
            call(self.addr, "POST", "/session", Some(&caps)).expect("chromedriver must start a Chromium session");
        let id = created["value"]["sessionId"].as_str().expect("a new session must have an id").to_owned();
        let session = Session { driver: self, id };
        session.cmd("POST", "timeouts", &json!({ "pageLoad": 30_000, "script": 10_000, "implicit": 0 }));
        session
    }
}

/// One WebDriver command: JSON in, JSON out; an answer with `value.error` is an error.
fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut client =
        Client::to(addr).io_timeout(COMMAND_TIMEOUT).open().map_err(|e| format!("{method} {path}: {e}"))?;
    let r = client
        .request(method, path, &[("content-type", "application/json"), ("connection", "close")], body.as_bytes())
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("{method} {path}: not JSON ({e})"))?;
    match v["value"].get("error") {
        Some(err) => Err(format!("{method} {path}: {err}: {}", v["value"]["message"])),
        None => Ok(v),
    }
}

struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = call(self.driver.addr, "DELETE", &format!("/session/{}", self.id), None);
    }
}

impl Session<'_> {
    fn try_cmd(&self, method: &str, path: &str, body: &Value) -> Result<Value, String> {
        let body = (method == "POST").then_some(body);
        call(self.driver.addr, method, &format!("/session/{}/{path}", self.id), body).map(|v| v["value"].clone())
    }

    fn cmd(&self, method: &str, path: &str, body: &Value) -> Value {
        self.try_cmd(method, path, body).unwrap_or_else(|e| panic!("webdriver command must succeed: {e}"))
    }

    fn script(&self, script: &str) -> Value {
        self.cmd("POST", "execute/sync", &json!({ "script": script, "args": [] }))
    }

    /// The element id of the first match of `css`, if any.
    fn find(&self, css: &str) -> Option<String> {
        let found = self.try_cmd("POST", "element", &json!({ "using": "css selector", "value": css })).ok()?;
        found.as_object()?.values().next()?.as_str().map(str::to_owned)
    }

    /// The text of the first match of `css` (empty if there is none yet).
    fn text(&self, css: &str) -> String {
        self.find(css)
            .and_then(|e| self.try_cmd("GET", &format!("element/{e}/text"), &Value::Null).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Waits (bounded) until the text of `css` is `expected`.
    fn wait_text(&self, css: &str, expected: &str) {
        let mut seen = String::new();
        let ok = wait::until(PAGE_TIMEOUT, || {
            seen = self.text(css);
            seen == expected
        });
        assert!(ok, "{css} must show {expected:?} within {PAGE_TIMEOUT:?}; shows {seen:?}");
    }

    fn polls(&self) -> u64 {
        self.script("return Number(document.body.dataset.polls)").as_u64().unwrap_or(0)
    }

    /// Browser log entries at SEVERE level (console errors, failed loads), and errors the page caught.
    fn errors(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .try_cmd("POST", "se/log", &json!({ "type": "browser" }))
            .unwrap_or_else(|e| panic!("the browser log must be readable: {e}"))
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].to_string())
            .collect();
        let caught =
            self.script("return (window.stickyDashboard && window.stickyDashboard.errors) || ['no dashboard state']");
        out.extend(caught.as_array().into_iter().flatten().map(Value::to_string));
        out
    }

    fn screenshot(&self, path: &Path) {
        let png = self.cmd("GET", "screenshot", &Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a screenshot is base64 text"))
            .expect("the screenshot must be valid base64");
        assert!(bytes.starts_with(b"\x89PNG"), "the screenshot must be a PNG");
        std::fs::write(path, bytes).expect("the screenshot must be writable");
    }
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `n` requests without a cookie: the backend that answered each, counted.
fn new_sessions(proxy: SocketAddr, n: usize) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        *counts.entry(who(&get_ok(proxy, "/", &[]))).or_insert(0) += 1;
    }
    counts
}

fn backends_json(admin: SocketAddr) -> Value {
    serde_json::from_str(&get_ok(admin, "/api/backends", &[]).into_text()).expect("/api/backends must be JSON")
}

fn backend_field(doc: &Value, backend: &str, field: &str) -> Value {
    doc["services"][0]["backends"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["id"] == backend))
        .map_or(Value::Null, |b| b[field].clone())
}

/// The admin token the dashboard test types into the page.
const TOKEN: &str = "dashboard-test-token-0123456789";

#[test]
fn dashboard_shows_live_numbers_and_drains_through_its_button() {
    let _one = BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let names = ["demo-1", "demo-2", "demo-3"];
    let backends: Vec<Proc> = names.iter().map(|n| whoami(n)).collect();
    let refs: Vec<&Proc> = backends.iter().collect();
    let token_dir = TempDir::new("dashboard-token");
    let token_file = token_dir.file("token", TOKEN);
    let lb = sticky(&refs, &names, &["--admin-token-file", token_file.to_str().expect("utf-8 path")]);
    let admin = lb.admin.expect("sticky runs with an admin listener");

    // 9 new sessions spread round robin, then 4 requests pinned by demo-1's cookie
    let sessions = new_sessions(lb.addr, 9);
    let pinned = get_ok(lb.addr, "/", &[]);
    let pinned_to = who(&pinned);
    let cookie = format!("sticky={}", pinned.cookie("sticky").expect("a new session gets a cookie"));
    for _ in 0..4 {
        assert_eq!(who(&get_ok(lb.addr, "/", &[("cookie", &cookie)])), pinned_to, "the cookie pins");
    }
    let mut expected = sessions.clone();
    *expected.entry(pinned_to.clone()).or_insert(0) += 1;

    let artifacts = TempDir::new("dashboard");
    let driver = Driver::start(&artifacts.path().join("chromedriver.log"));
    let browser = driver.session();
    browser.cmd("POST", "url", &json!({ "url": format!("http://{admin}/") }));
    assert!(wait::until(PAGE_TIMEOUT, || browser.polls() >= 2), "the page must poll /api/overview");

    // every backend's numbers as the requests made them, and as /api/backends says
    let doc = backends_json(admin);
    for name in names {
        let row = format!("tr[data-backend=\"default/{name}\"]");
        let sessions = expected.get(name).copied().unwrap_or(0);
        browser.wait_text(&format!("{row} td[data-field=sessions]"), &sessions.to_string());
        assert_eq!(backend_field(&doc, name, "sessions"), json!(sessions), "/api/backends agrees on {name}");
        let pins = if name == pinned_to { 4 } else { 0 };
        browser.wait_text(&format!("{row} td[data-field=pinned]"), &pins.to_string());
        browser.wait_text(&format!("{row} td[data-field=state]"), "active");
        browser.wait_text(&format!("{row} td[data-field=health]"), "up");
        // every request was answered: no upstream connection is in use (tests/admin_e2e.rs holds one)
        browser.wait_text(&format!("{row} td[data-field=open]"), "0");
        assert_eq!(backend_field(&doc, name, "open_connections"), json!(0), "/api/backends agrees on {name}");
    }
    assert!(
        browser
            .find("#discovery")
            .is_some_and(|_| { browser.script("return document.querySelector('#discovery').hidden") == json!(true) }),
        "without --docker there is no discovery section"
    );
    assert_eq!(browser.text("section[data-service=default] h2 [data-field=name]"), "default");

    // writes need the token: the buttons wait for it; typed into the page's field, they work
    let row = "tr[data-backend=\"default/demo-2\"]";
    browser.wait_text("#writes", "writes need a token");
    assert!(
        browser.find(&format!("{row} button[data-action=drain]")).is_some(),
        "an active backend has a Drain button"
    );
    let enabled =
        |b: &Session<'_>| b.script(&format!("return !document.querySelector('{row} button').disabled")) == json!(true);
    assert!(!enabled(&browser), "without the token the Drain button is disabled");
    let field = browser.find("#token").expect("the page asks for the token");
    browser.cmd("POST", &format!("element/{field}/value"), &json!({ "text": TOKEN }));
    let use_it = browser.find("#auth button[type=submit]").expect("the token form has its button");
    browser.cmd("POST", &format!("element/{use_it}/click"), &json!({}));
    assert!(wait::until(PAGE_TIMEOUT, || enabled(&browser)), "with the token the Drain button is enabled");
    // drain demo-2 through its button: the page shows it, the API agrees, new sessions avoid it
    let button =
        browser.find(&format!("{row} button[data-action=drain]")).expect("an active backend has a Drain button");
    browser.cmd("POST", &format!("element/{button}/click"), &json!({}));
    browser.wait_text(&format!("{row} td[data-field=state]"), "draining");
    browser.wait_text(&format!("{row} button"), "Activate");
    assert_eq!(backend_field(&backends_json(admin), "demo-2", "state"), json!("draining"));
    assert!(!new_sessions(lb.addr, 6).contains_key("demo-2"), "a drained backend takes no new session");
    browser.wait_text("#message", "demo-2 of default: draining");

    // traffic while the picture is taken, so that the rates and sparklines show it (bounded: it
    // stops when the test is done, or after 30 s)
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let until = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                let _ = common::get(lb.addr, "/", &[("cookie", &cookie)]);
                let _ = common::get(lb.addr, "/", &[]);
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        // stops the load also when an assertion below fails (the scope joins the thread first)
        let _stop = StopOnDrop(&stop);
        let polled = browser.polls();
        let kept_polling = wait::until(PAGE_TIMEOUT, || browser.polls() >= polled + 5);
        // the pinned backend answered within the window: its latency quantiles are shown
        let latency = format!("tr[data-backend=\"default/{pinned_to}\"] td[data-field=latency]");
        let mut shown = String::new();
        let has_latency = wait::until(PAGE_TIMEOUT, || {
            shown = browser.text(&latency);
            shown.contains(" · ") && shown.contains('s')
        });
        let errors = browser.errors();
        let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
        browser.screenshot(&shot);
        stop.store(true, Ordering::Relaxed);
        eprintln!("dashboard screenshot: {}", shot.display());
        assert!(kept_polling, "the page keeps polling");
        assert!(has_latency, "the latency of {pinned_to} must be shown as p50 · p95; shows {shown:?}");
        assert!(errors.is_empty(), "the page must run without console errors: {errors:?}");
    });

    if std::env::var_os("STICKY_DOCS_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
        let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
        std::fs::copy(&shot, &docs).expect("docs/dashboard.png must be writable");
    }
}

#[test]
fn dashboard_shows_tcp_mode_in_user_space() {
    let _one = BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let backends = [whoami("t-1"), whoami("t-2")];
    let mut args: Vec<String> = vec!["--mode".into(), "tcp".into(), "--no-ebpf".into()];
    for b in &backends {
        args.extend(["--backend".to_owned(), b.addr.to_string()]);
    }
    let lb = sticky_args(&args);
    let admin = lb.admin.expect("sticky runs with an admin listener");
    // one client: a Maglev pick, then its affinity
    let first = who(&get_ok(lb.addr, "/", &[]));
    for _ in 0..2 {
        assert_eq!(who(&get_ok(lb.addr, "/", &[])), first, "a client stays on its backend");
    }

    let artifacts = TempDir::new("dashboard-tcp");
    let driver = Driver::start(&artifacts.path().join("chromedriver.log"));
    let browser = driver.session();
    browser.cmd("POST", "url", &json!({ "url": format!("http://{admin}/") }));
    browser.wait_text("[data-field=tcp-path]", "user space (fallback)");
    let service = "p[data-tcp-service=default]";
    let mut shown = String::new();
    let counted = wait::until(PAGE_TIMEOUT, || {
        shown = browser.text(service);
        shown.contains("affinity hit 2") && shown.contains("maglev pick 1")
    });
    assert!(counted, "the service's connections by outcome must be shown; shows {shown:?}");
    assert!(browser.text("tr[data-map=AFFINITY]").contains("1 / 65.5k"), "the affinity table's usage is shown");
    // every backend of the service has its row: the one that served the client counts its 3 connections
    // (the table is redrawn at each poll: read until a read lands between two redraws)
    for b in &backends {
        let row = format!("tr[data-tcp-backend=\"default/{}\"]", b.addr);
        let expected = if who(&get_ok(b.addr, "/", &[])) == first { "3" } else { "0" };
        let (mut text, mut connections) = (String::new(), String::new());
        let shown = wait::until(PAGE_TIMEOUT, || {
            text = browser.text(&row);
            connections = browser.text(&format!("{row} td[data-field=connections]"));
            text.contains("active") && text.contains("user space") && connections.trim() == expected
        });
        assert!(shown, "{row} must show active, user space and {expected} connections: {text:?} / {connections:?}");
    }
    let errors = browser.errors();
    assert!(errors.is_empty(), "the page must run without console errors: {errors:?}");
    browser.screenshot(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-tcp.png"));
}

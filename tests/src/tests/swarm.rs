//! Swarm tests: a private dockerd + `docker swarm init` per test, images built from the static
//! `sticky` binary with the workspace's Dockerfile, sticky deployed with `deploy/stack.yml`, traffic
//! only to 127.0.0.1 (published ports) and to `docker_gwbridge` addresses of this Swarm's containers.
//!
//! Every body is checked: a response counts only if whoami's `I'm NAME` names the expected task.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use testkit::{
    http::{self, HttpError, Response},
    net::free_listen_port,
    wait,
};

use crate::{
    require_root, sticky_bin,
    swarm::{Swarm, docker_available, is_static, workspace_file},
};

/// Returns from the test, loudly, when Docker or a static `sticky` binary is missing.
macro_rules! require_swarm {
    () => {
        require_root!();
        if !docker_available() {
            crate::skip::skip(
                &format!("{}::{}", module_path!(), line!()),
                "needs docker.io (cargo xtask setup installs it)",
            );
            return;
        }
        if !is_static(&sticky_bin()) {
            crate::skip::skip(
                &format!("{}::{}", module_path!(), line!()),
                "needs a static sticky binary for FROM scratch images (cargo xtask test builds one)",
            );
            return;
        }
    };
}

/// The image the README's walkthrough builds (`cargo xtask image`) and the stack file defaults to.
const IMAGE: &str = "sticky:latest";
const WHOAMI: &str = "whoami-service";
/// The seed tutorial's cookie name: Traefik's generated name for backend `whoami-service`.
const SEED_COOKIE: &str = "_a49bc";

/// One `GET /` with `connection: close` to `addr`, with a `host` header and optionally a `cookie` header.
fn http_get(addr: SocketAddr, host: &str, cookie: Option<&str>) -> Result<Response, HttpError> {
    let mut headers = vec![("host", host)];
    headers.extend(cookie.map(|c| ("cookie", c)));
    http::get(addr, "/", &headers)
}

/// One HTTP/1.1 GET with `Connection: close` to 127.0.0.1:`port`; the body, if the status is 200.
fn get_local(port: u16) -> Option<String> {
    http_get(loopback(port), "localhost", None).ok().filter(|r| r.status == 200).map(Response::into_text)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn short(container: &str) -> &str {
    &container[..container.len().min(12)]
}

#[test]
fn private_swarm_runs_a_service_from_the_static_binary() {
    require_swarm!();
    let swarm = Swarm::start();
    swarm.build_image(IMAGE, &sticky_bin());
    // Swarm gives a task docker_gwbridge (which host-mode publishing needs) only with an overlay:
    // the daemon runs without the default bridge.
    swarm.docker(&["network", "create", "-d", "overlay", "hellonet"]);
    swarm.docker(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        "hello",
        "--network",
        "hellonet",
        "--init",
        "--stop-grace-period",
        "1s",
        "--publish",
        "mode=host,target=8000,published=18321",
        IMAGE,
        "whoami",
        "--listen",
        "0.0.0.0:8000",
        "--name",
        "hello-task",
    ]);
    swarm.wait_running("hello", 1, Duration::from_secs(30));
    let served = wait::until(Duration::from_secs(10), || get_local(18321).as_deref() == Some("I'm hello-task\n"));
    assert!(served, "the published port must reach the task and its body must name it:\n{}", swarm.log_tail());
}

// === the seed walkthrough, set up as the README says ===

/// The overlay network, the cookie secret, the image (twice, for a rolling update), and the seed's
/// whoami service: 3 tasks and exactly the four Traefik labels of the tutorial. whoami names itself
/// by its host name, which is the container's short id, as jwilder/whoami does.
fn seed(swarm: &Swarm, extra: &[&str]) {
    swarm.build_image(IMAGE, &sticky_bin());
    swarm.docker(&["network", "create", "-d", "overlay", "whoaminet"]);
    let key = swarm.socket_dir().join("cookie.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").expect("write the cookie key");
    swarm.docker(&["secret", "create", "sticky_cookie_key", key.to_str().expect("utf-8 path")]);
    let mut args = vec![
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        WHOAMI,
        "--replicas",
        "3",
        "--network",
        "whoaminet",
        "--init",
        "--stop-grace-period",
        "1s",
        "--label",
        "traefik.docker.network=whoaminet",
        "--label",
        "traefik.port=8000",
        "--label",
        "traefik.frontend.rule=PathPrefix:/",
        "--label",
        "traefik.backend.loadbalancer.stickiness=true",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[IMAGE, "whoami", "--listen", "0.0.0.0:8000"]);
    swarm.docker(&args);
}

/// Deploys `deploy/stack.yml` as stack `name`, published on `port`, as the README's pasted block
/// does (`STICKY_PORT=... docker stack deploy --resolve-image never -c deploy/stack.yml NAME`), and
/// waits until it serves whoami through it. Only what this private Swarm must differ in is set: the
/// socket of its own dockerd.
fn deploy_sticky(swarm: &Swarm, name: &str, port: u16) {
    deploy_stack_file(swarm, name, port, &workspace_file("deploy/stack.yml"));
}

/// [`deploy_sticky`] with another stack file (the tcp test's copy with a port added to the holder).
fn deploy_stack_file(swarm: &Swarm, name: &str, port: u16, file: &std::path::Path) {
    let env = vec![("STICKY_PORT", port.to_string()), ("DOCKER_SOCKET", swarm.socket().display().to_string())];
    swarm.deploy_stack(name, file, &env);
    let service = format!("{name}_sticky");
    swarm.wait_running(&format!("{name}_hold"), 1, Duration::from_secs(30));
    swarm.wait_running(&service, 1, Duration::from_secs(30));
    let serving = wait::until(Duration::from_secs(15), || {
        http_get(loopback(port), "localhost", None).is_ok_and(|r| r.whoami().is_some())
    });
    assert!(
        serving,
        "sticky must serve on 127.0.0.1:{port}:\n{}\nthe holder's log:\n{}",
        swarm.service_logs(&service),
        swarm.service_logs(&format!("{name}_hold"))
    );
}

/// The short container ids of `service`'s running tasks, which whoami's bodies name.
fn names(swarm: &Swarm, service: &str) -> BTreeSet<String> {
    swarm.task_containers(service).iter().map(|(_, c)| short(c).to_owned()).collect()
}

/// Fresh clients (no cookie) until every name in `want` answered: at least `limit` requests, then on
/// for up to 20 s (Docker reports a task running before sticky's discovery has seen it, the more so
/// on a busy machine), one request every 20 ms.
fn fresh_reach(port: u16, want: &BTreeSet<String>, limit: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let start = Instant::now();
    for i in 0.. {
        if let Ok(r) = http_get(loopback(port), "localhost", None)
            && let Some(name) = r.whoami()
        {
            seen.insert(name.to_owned());
        }
        if want.is_subset(&seen) || (i >= limit && start.elapsed() > Duration::from_secs(20)) {
            break;
        }
        if i >= limit {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    seen
}

// === client loops ===

/// What happened to the clients of a [`ClientLoop`].
#[derive(Debug, Default)]
struct LoopReport {
    requests: u64,
    /// Time since start, client, and what went wrong.
    failures: Vec<(Duration, usize, String)>,
    /// (client, from, to, whether a new cookie came with the move).
    moves: Vec<(usize, String, String, bool)>,
    /// Each client's task at the end.
    last: BTreeMap<usize, String>,
    /// The longest a request took (a gap in serving shows here: connections waiting in a queue).
    slowest: Duration,
}

/// `clients` threads, each a browser with a cookie jar requesting `GET /` every 20 ms through
/// 127.0.0.1:`port` until stopped (bounded by `limit`).
struct ClientLoop {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<LoopReport>>,
}

impl ClientLoop {
    fn start(port: u16, clients: usize, cookie: &'static str, limit: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let threads = (0..clients)
            .map(|client| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut report = LoopReport::default();
                    let mut jar: Option<String> = None;
                    let mut task: Option<String> = None;
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                        report.requests += 1;
                        let sent = jar.as_ref().map(|v| format!("{cookie}={v}"));
                        let asked = Instant::now();
                        let answer = http_get(loopback(port), "localhost", sent.as_deref());
                        report.slowest = report.slowest.max(asked.elapsed());
                        match answer {
                            Ok(r) if r.whoami().is_some() => {
                                let name = r.whoami().unwrap_or_default().to_owned();
                                let new_cookie = r.cookie(cookie).map(str::to_owned);
                                if let Some(from) = &task
                                    && *from != name
                                {
                                    report.moves.push((client, from.clone(), name.clone(), new_cookie.is_some()));
                                }
                                if new_cookie.is_some() {
                                    jar = new_cookie;
                                }
                                task = Some(name);
                            }
                            Ok(r) => report.failures.push((
                                started.elapsed(),
                                client,
                                format!("{} {:?}", r.status, r.text()),
                            )),
                            Err(e) => report.failures.push((started.elapsed(), client, format!("{e:?}"))),
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    if let Some(t) = task {
                        report.last.insert(client, t);
                    }
                    report
                })
            })
            .collect();
        Self { stop, threads }
    }

    fn finish(mut self) -> LoopReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = LoopReport::default();
        for t in std::mem::take(&mut self.threads) {
            let r = t.join().expect("client thread must not panic");
            all.requests += r.requests;
            all.failures.extend(r.failures);
            all.moves.extend(r.moves);
            all.last.extend(r.last);
            all.slowest = all.slowest.max(r.slowest);
        }
        all
    }
}

impl Drop for ClientLoop {
    fn drop(&mut self) {
        // a failing test still stops its threads
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The tasks the clients of a loop are pinned to right now (one request each, with their cookies).
fn pins(report: &LoopReport) -> BTreeMap<usize, String> {
    report.last.clone()
}

/// Waits until `service` has exactly `n` running tasks and no other container of it is left.
fn wait_settled(swarm: &Swarm, service: &str, n: usize) {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let settled = wait::until(Duration::from_secs(60), || {
        let ps = swarm.docker(&["ps", "-q", "--filter", &filter]);
        swarm.running_tasks(service).len() == n && ps.lines().count() == n
    });
    assert!(settled, "{service} did not settle at {n} tasks:\n{}", swarm.docker(&["service", "ps", service]));
}

/// Nanoseconds since the epoch at which a task became `running` (its status timestamp).
fn running_since(swarm: &Swarm, task: &str) -> u128 {
    let ns = swarm.docker(&["inspect", "--format", "{{.Status.Timestamp.UnixNano}}", task]);
    ns.parse().unwrap_or_else(|e| panic!("task {task} timestamp {ns:?}: {e}"))
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos()
}

/// The seed tutorial redone with sticky, then the life of the service under sticky: scale up (new
/// tasks serve within 1 s, measured), scale down and a rolling update under a client loop (no
/// failed request), a killed task (only the request in flight may fail). One Swarm for all, in order.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario on one Swarm (starting it is most of the cost): each step runs on the state the one before left"
)]
fn seed_walkthrough_scaling_rolling_update_and_killed_task() {
    require_swarm!();
    let suite = Instant::now();
    let swarm = Swarm::start();
    seed(&swarm, &[]);
    swarm.wait_running(WHOAMI, 3, Duration::from_secs(30));
    let port = free_listen_port();
    deploy_sticky(&swarm, "sticky", port);
    let addr = loopback(port);

    // --- the walkthrough: curl -v shows Set-Cookie; the same cookie 20 times reaches one container
    let first = http_get(addr, "localhost", None).expect("first request");
    let value = first.cookie(SEED_COOKIE).unwrap_or_else(|| panic!("Set-Cookie {SEED_COOKIE} expected: {first:?}"));
    assert!(!value.contains("http") && !value.contains("10.0.") && !value.contains(':'), "opaque value: {value}");
    let pinned = first.whoami().expect("whoami answers").to_owned();
    let running = names(&swarm, WHOAMI);
    assert!(running.contains(&pinned), "{pinned} must be one of the running containers {running:?}");
    let cookie = format!("{SEED_COOKIE}={value}");
    for i in 0..20 {
        let r = http_get(addr, "localhost", Some(&cookie)).expect("pinned request");
        assert_eq!(r.whoami(), Some(pinned.as_str()), "request {i} with the cookie must reach {pinned}: {r:?}");
        assert!(r.cookie(SEED_COOKIE).is_none(), "a kept session gets no new cookie");
    }
    let reached = fresh_reach(port, &running, 60);
    assert_eq!(reached, running, "fresh clients must reach every task");

    // --- a Traefik cookie (`http://IP:PORT`) of a current task is honoured once, then sticky's own
    let (task, container) = swarm.task_containers(WHOAMI).into_iter().next().expect("a task");
    let ip = swarm.docker(&[
        "inspect",
        "--format",
        "{{range .NetworksAttachments}}{{if eq .Network.Spec.Name \"whoaminet\"}}{{index .Addresses 0}}{{end}}{{end}}",
        &task,
    ]);
    let ip = ip.split('/').next().unwrap_or_default().to_owned();
    let legacy = http_get(addr, "localhost", Some(&format!("{SEED_COOKIE}=http://{ip}:8000"))).expect("legacy cookie");
    assert_eq!(legacy.whoami(), Some(short(&container)), "the Traefik cookie names task {task} at {ip}: {legacy:?}");
    let rewritten = legacy.cookie(SEED_COOKIE).expect("answered with sticky's own cookie").to_owned();
    assert!(!rewritten.contains("http"), "{rewritten}");
    let again = http_get(addr, "localhost", Some(&format!("{SEED_COOKIE}={rewritten}"))).expect("rewritten cookie");
    assert_eq!(again.whoami(), Some(short(&container)));
    let unknown =
        http_get(addr, "localhost", Some(&format!("{SEED_COOKIE}=http://10.255.255.1:8000"))).expect("unknown");
    assert!(unknown.whoami().is_some() && unknown.cookie(SEED_COOKIE).is_some(), "treated as absent: {unknown:?}");
    eprintln!("walkthrough done after {:?}", suite.elapsed());

    // --- the admin API as deployed: the README's lines, as pasted, over the unix socket
    admin_api_over_the_socket(&swarm, port);
    // --- the cookie labels on the live service: the legacy window's end, and an identity change
    cookie_labels_on_a_live_service(&swarm, port, &format!("{SEED_COOKIE}=http://{ip}:8000"), short(&container));

    // --- scale 3 -> 5: each new task serves within 1 s of becoming running
    let before = names(&swarm, WHOAMI);
    swarm.docker(&["service", "scale", "-d", &format!("{WHOAMI}=5")]);
    let mut first_served: HashMap<String, u128> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && first_served.len() < 2 {
        if let Ok(r) = http_get(addr, "localhost", None)
            && let Some(name) = r.whoami()
            && !before.contains(name)
        {
            first_served.entry(name.to_owned()).or_insert_with(now_ns);
        }
    }
    swarm.wait_running(WHOAMI, 5, Duration::from_secs(10));
    let new_tasks: Vec<(String, String)> =
        swarm.task_containers(WHOAMI).into_iter().filter(|(_, c)| !before.contains(short(c))).collect();
    assert_eq!(new_tasks.len(), 2, "two new tasks: {new_tasks:?}");
    for (task, container) in &new_tasks {
        let served = first_served
            .get(short(container))
            .unwrap_or_else(|| panic!("new task {task} ({}) was never served: {first_served:?}", short(container)));
        let since = running_since(&swarm, task);
        let delay = Duration::from_nanos(u64::try_from(served.saturating_sub(since)).expect("a delay must fit u64 ns"));
        let delay_ms = delay.as_secs_f64() * 1e3;
        eprintln!("new task {task}: served {delay_ms:.0} ms after it became running");
        assert!(
            delay_ms < 1000.0,
            "new task {task} served {delay_ms:.0} ms after running; must be under 1 s. sticky's log:\n{}",
            swarm.service_logs("sticky_sticky")
        );
    }

    // --- scale 5 -> 2 under a client loop: no failed request; moved clients get a new cookie
    let clients = ClientLoop::start(port, 12, SEED_COOKIE, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1500));
    swarm.docker(&["service", "scale", "-d", &format!("{WHOAMI}=2")]);
    wait_settled(&swarm, WHOAMI, 2);
    std::thread::sleep(Duration::from_secs(1));
    let report = clients.finish();
    let survivors = names(&swarm, WHOAMI);
    eprintln!(
        "scale-down: {} requests, {} failures, {} moves",
        report.requests,
        report.failures.len(),
        report.moves.len()
    );
    assert!(report.failures.is_empty(), "no request may fail while scaling down: {:?}", report.failures);
    assert!(!report.moves.is_empty(), "clients of removed tasks must have moved");
    for (client, from, to, new_cookie) in &report.moves {
        assert!(*new_cookie, "client {client} moved {from} -> {to} and must get a new cookie");
        assert!(!survivors.contains(from), "client {client} left {from}, which still runs: stickiness broken");
        assert!(survivors.contains(to), "client {client} moved to {to}, not a survivor {survivors:?}");
    }
    assert!(pins(&report).values().all(|t| survivors.contains(t)), "{:?} vs {survivors:?}", report.last);

    // --- rolling update of the image under the same loop: no failed request
    swarm.build_image("sticky:test2", &sticky_bin());
    let old = names(&swarm, WHOAMI);
    let clients = ClientLoop::start(port, 12, SEED_COOKIE, Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(1500));
    let updating = Instant::now();
    swarm.docker(&[
        "service",
        "update",
        "-d",
        "--no-resolve-image",
        "--update-monitor",
        "500ms",
        "--image",
        "sticky:test2",
        WHOAMI,
    ]);
    let done = wait::until(Duration::from_secs(60), || {
        swarm.docker(&["service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", WHOAMI])
            == "completed"
    });
    assert!(done, "the rolling update must complete:\n{}", swarm.docker(&["service", "ps", WHOAMI]));
    wait_settled(&swarm, WHOAMI, 2);
    std::thread::sleep(Duration::from_secs(1));
    let report = clients.finish();
    let updated = names(&swarm, WHOAMI);
    eprintln!(
        "rolling update ({:?}): {} requests, {} failures, {} moves",
        updating.elapsed(),
        report.requests,
        report.failures.len(),
        report.moves.len()
    );
    assert!(old.is_disjoint(&updated), "every task replaced: {old:?} -> {updated:?}");
    assert!(report.failures.is_empty(), "no request may fail during a rolling update: {:?}", report.failures);
    assert!(pins(&report).values().all(|t| updated.contains(t)), "every client ends on a new task: {:?}", report.last);
    assert!(report.moves.iter().all(|m| m.3), "every move comes with a new cookie: {:?}", report.moves);

    // --- docker kill of a task: only the request in flight may fail, the next one is re-pinned
    let clients = ClientLoop::start(port, 4, SEED_COOKIE, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(800));
    let (victim_task, victim) = swarm.task_containers(WHOAMI).into_iter().next().expect("a task to kill");
    swarm.docker(&["kill", &victim]);
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let report = clients.finish();
    eprintln!("kill: {} requests, failures {:?}, moves {:?}", report.requests, report.failures, report.moves);
    let victims: Vec<&(usize, String, String, bool)> =
        report.moves.iter().filter(|(_, from, _, _)| from == short(&victim)).collect();
    let mut failed_clients: Vec<usize> = report.failures.iter().map(|f| f.1).collect();
    failed_clients.sort_unstable();
    failed_clients.dedup();
    assert_eq!(failed_clients.len(), report.failures.len(), "at most one failure (the one in flight) per client");
    for f in &report.failures {
        assert!(
            victims.iter().any(|v| v.0 == f.1),
            "only a client of the killed task {victim_task} may see a failure: {f:?}"
        );
    }
    assert!(!victims.is_empty(), "some clients were pinned to the killed task: {:?}", report.moves);
    for (client, _, to, new_cookie) in &victims {
        assert!(*new_cookie && to != short(&victim), "client {client} re-pinned with a new cookie");
    }
    assert!(report.last.values().all(|t| t != short(&victim)), "nobody stays on the killed task: {:?}", report.last);
    eprintln!("killed task handled within {:?}; whole test {:?}", killed.elapsed(), suite.elapsed());
}

/// The README walkthrough's admin lines (`ADMIN=...`, `curl --unix-socket ...`, `TASK=...`), exactly
/// as printed there: the one that starts with `prefix` (and contains `needle`).
fn readme_line(prefix: &str, needle: &str) -> String {
    let readme = std::fs::read_to_string(workspace_file("README.md")).expect("read README.md");
    let walkthrough = readme.split("### The classic Traefik walkthrough").nth(1).expect("the walkthrough section");
    let block = walkthrough.split("```").nth(1).expect("the walkthrough's code block");
    block
        .lines()
        .find(|l| l.starts_with(prefix) && l.contains(needle))
        .unwrap_or_else(|| panic!("the walkthrough has no line {prefix}...{needle}"))
        .to_owned()
}

/// Runs `lines` with sh as an operator pastes them on the manager (this Swarm's dockerd as
/// `DOCKER_HOST`); stdout.
fn paste(swarm: &Swarm, lines: &[String]) -> String {
    let script = format!("set -e\n{}\n", lines.join("\n"));
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("DOCKER_HOST", swarm.docker_host())
        .env("DOCKER_CLI_HINTS", "false")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "pasted lines failed:\n{script}\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The `/api/backends` document: `service`'s backends as (id, state).
fn backend_states(report: &str, service: &str) -> BTreeMap<String, String> {
    let doc: serde_json::Value =
        serde_json::from_str(report).unwrap_or_else(|e| panic!("/api/backends is JSON ({e}): {report}"));
    let services = doc["services"].as_array().expect("services");
    let svc = services.iter().find(|s| s["name"] == service).unwrap_or_else(|| panic!("{service} in {report}"));
    svc["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| (b["id"].as_str().expect("id").to_owned(), b["state"].as_str().expect("state").to_owned()))
        .collect()
}

/// The admin API of the deployed stack, reached as the README says: the socket in the volume
/// `sticky_admin` (mode 0600, root), `/api/backends`, then a drain by the 12-character task id
/// `docker service ps` prints (fresh clients avoid the task, its pinned client stays), and activate.
fn admin_api_over_the_socket(swarm: &Swarm, port: u16) {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let admin = readme_line("ADMIN=", "sticky_admin");
    let backends = readme_line("curl --unix-socket", "/api/backends");
    let task_line = readme_line("TASK=", "docker service ps");
    let drain = readme_line("curl --unix-socket", "/drain");
    let activate = readme_line("curl --unix-socket", "/activate");

    let socket = paste(swarm, &[admin.clone(), "echo \"$ADMIN\"".to_owned()]);
    let meta = std::fs::symlink_metadata(socket.trim()).unwrap_or_else(|e| panic!("{}: {e}", socket.trim()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "only root may use the admin socket");
    assert_eq!(meta.uid(), 0, "owned by root");
    for service in ["sticky_sticky", "sticky_hold"] {
        let published = swarm.docker(&["service", "inspect", "--format", "{{json .Spec.EndpointSpec.Ports}}", service]);
        assert_eq!(published.matches("PublishedPort").count(), 0, "{service} publishes nothing: {published}");
    }

    let tasks: Vec<(String, String)> = swarm.task_containers(WHOAMI);
    let states = backend_states(&paste(swarm, &[admin.clone(), backends.clone()]), WHOAMI);
    let ids: BTreeSet<&String> = states.keys().collect();
    let want: BTreeSet<&String> = tasks.iter().map(|(t, _)| t).collect();
    assert_eq!(ids, want, "/api/backends over the socket lists the running tasks");
    assert!(states.values().all(|s| s == "active"), "{states:?}");

    // a client pinned before the drain stays on its task
    let task = paste(swarm, &[task_line.clone(), "echo \"$TASK\"".to_owned()]).trim().to_owned();
    assert_eq!(task.len(), 12, "the pasted line keeps 12 characters, as docker service ps shows them: {task}");
    let (full, container) = tasks.iter().find(|(t, _)| t.starts_with(&task)).expect("the task is running").clone();
    let drained = short(&container).to_owned();
    let pinned_cookie = (0..60)
        .filter_map(|_| http_get(loopback(port), "localhost", None).ok())
        .find(|r| r.whoami() == Some(drained.as_str()))
        .and_then(|r| r.cookie(SEED_COOKIE).map(|v| format!("{SEED_COOKIE}={v}")))
        .expect("a fresh client lands on every task");
    let said = paste(swarm, &[admin.clone(), task_line.clone(), drain]);
    eprintln!("admin socket: drain by 12-character id {task}: {}", said.trim());
    assert!(said.contains("draining"), "{said}");
    let states = backend_states(&paste(swarm, &[admin.clone(), backends.clone()]), WHOAMI);
    assert_eq!(states[&full], "draining", "{states:?}");
    assert_eq!(states.values().filter(|s| *s == "active").count(), 2, "{states:?}");
    let others: BTreeSet<String> = names(swarm, WHOAMI).into_iter().filter(|n| *n != drained).collect();
    let reached: BTreeSet<String> = (0..30)
        .filter_map(|_| http_get(loopback(port), "localhost", None).ok())
        .filter_map(|r| r.whoami().map(str::to_owned))
        .collect();
    assert!(!reached.contains(&drained), "no new session on the drained task {drained}: {reached:?}");
    assert!(reached.is_subset(&others) && !reached.is_empty(), "{reached:?} vs {others:?}");
    let kept = http_get(loopback(port), "localhost", Some(&pinned_cookie)).expect("pinned request");
    assert_eq!(kept.whoami(), Some(drained.as_str()), "a pinned client stays on the draining task");
    let said = paste(swarm, &[admin.clone(), task_line, activate]);
    assert!(said.contains("active"), "{said}");
    let states = backend_states(&paste(swarm, &[admin, backends]), WHOAMI);
    assert!(states.values().all(|s| s == "active"), "activated again: {states:?}");
    eprintln!("admin socket: /api/backends listed {} tasks; drain and activate by prefix answered", states.len());
}

/// Waits until sticky's log has a line with every one of `needles`; the log.
fn wait_log(swarm: &Swarm, needles: &[&str]) -> String {
    let mut log = String::new();
    let found = wait::until(Duration::from_secs(10), || {
        log = swarm.service_logs("sticky_sticky");
        log.lines().any(|l| needles.iter().all(|n| l.contains(n)))
    });
    assert!(found, "sticky's log must have a line with {needles:?}:\n{log}");
    log
}

/// `sticky.cookie.legacy.until` and `sticky.cookie.identity` changed on the live service, as an
/// operator does with `docker service update --label-add`: sticky warns that Traefik cookies are
/// honoured with no end, ends the window at its date (a Traefik cookie `legacy` naming task
/// `container` no longer picks it), and warns when the identity changes (every cookie issued before
/// is re-pinned). Both labels are removed again.
fn cookie_labels_on_a_live_service(swarm: &Swarm, port: u16, legacy: &str, container: &str) {
    let warned = wait_log(swarm, &["WARN", "legacy Traefik cookies honoured with no end", WHOAMI]);
    assert_eq!(count(&warned, "legacy Traefik cookies honoured"), 1, "one line, at discovery:\n{warned}");
    let update = |args: &[&str]| {
        let mut all = vec!["service", "update", "-d", "--no-resolve-image"];
        all.extend_from_slice(args);
        all.push(WHOAMI);
        swarm.docker(&all);
    };
    update(&["--label-add", "sticky.cookie.legacy.until=2020-01-01T00:00:00Z"]);
    wait_log(swarm, &["legacy Traefik cookie window over", "2020-01-01T00:00:00Z", WHOAMI]);
    let landed: BTreeSet<String> = (0..6)
        .filter_map(|_| http_get(loopback(port), "localhost", Some(legacy)).ok())
        .filter_map(|r| r.whoami().map(str::to_owned))
        .collect();
    assert!(landed.len() > 1, "after the window a Traefik cookie naming {container} is ignored: {landed:?}");
    update(&["--label-rm", "sticky.cookie.legacy.until"]);
    let reopened = wait::until(Duration::from_secs(10), || {
        count(&swarm.service_logs("sticky_sticky"), "legacy Traefik cookies honoured with no end") == 2
    });
    assert!(reopened, "the window without an end is warned about again");

    let first = http_get(loopback(port), "localhost", None).expect("a new session");
    let cookie = format!("{SEED_COOKIE}={}", first.cookie(SEED_COOKIE).expect("a cookie"));
    update(&["--label-add", "sticky.cookie.identity=slot"]);
    wait_log(swarm, &["WARN", "sticky.cookie.identity changed", "from=task", "to=slot", WHOAMI]);
    let after = http_get(loopback(port), "localhost", Some(&cookie)).expect("the old cookie");
    assert!(after.cookie(SEED_COOKIE).is_some(), "a task cookie is re-pinned under slot identity: {after:?}");
    update(&["--label-rm", "sticky.cookie.identity"]);
    let log = wait_log(swarm, &["WARN", "sticky.cookie.identity changed", "from=slot", "to=task"]);
    eprintln!(
        "cookie labels: legacy window warnings {}, window over {}, identity changes {}",
        count(&log, "legacy Traefik cookies honoured"),
        count(&log, "legacy Traefik cookie window over"),
        count(&log, "sticky.cookie.identity changed")
    );
}

/// How many lines of `log` contain `needle`.
fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// The Docker daemon hung (SIGSTOP) and then crashed (SIGKILL) and restarted while sticky runs.
///
/// What can be promised, given how Docker behaves (verified here): a hung daemon does not stop
/// containers, so sticky keeps serving on the client port with the last known tasks, logs the
/// API's loss and return once each, and discovers a scale-up afterwards. A crashed daemon leaves
/// the containers running, the listener holder's socket (on the host's network, no docker-proxy)
/// with them: the client port keeps serving pinned and re-pinned clients. When dockerd starts
/// again, Swarm replaces every task, sticky's and the holder's included (live-restore is
/// incompatible with swarm mode), and the new sticky discovers the new tasks on its own.
#[test]
fn dockerd_hung_then_killed_and_restarted_while_sticky_serves() {
    require_swarm!();
    let suite = Instant::now();
    let mut swarm = Swarm::start();
    seed(&swarm, &["--endpoint-mode", "dnsrr"]);
    swarm.wait_running(WHOAMI, 3, Duration::from_secs(30));
    let port = free_listen_port();
    deploy_sticky(&swarm, "sticky", port);
    let addr = loopback(port);
    let first = http_get(addr, "localhost", None).expect("first request");
    let pinned = first.whoami().expect("whoami").to_owned();
    let cookie = format!("{SEED_COOKIE}={}", first.cookie(SEED_COOKIE).expect("a cookie"));

    // --- hung API: longer than discovery's call timeout (5 s), requests keep being served
    swarm.signal_dockerd(libc::SIGSTOP);
    let hung = Instant::now();
    let mut served = 0;
    while hung.elapsed() < Duration::from_secs(7) {
        let r = http_get(addr, "localhost", Some(&cookie));
        assert_eq!(
            r.as_ref().ok().and_then(Response::whoami),
            Some(pinned.as_str()),
            "with the API hung for {:?}, the pinned task must keep answering: {r:?}",
            hung.elapsed()
        );
        served += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    swarm.signal_dockerd(libc::SIGCONT);
    eprintln!("API hung 7 s: {served} pinned requests served");
    let service = "sticky_sticky";
    let back =
        wait::until(Duration::from_secs(20), || count(&swarm.service_logs(service), "Docker API reachable again") == 1);
    let log = swarm.service_logs(service);
    assert!(back, "sticky must log the API's return:\n{log}");
    assert_eq!(count(&log, "Docker API unreachable"), 1, "one line for the loss:\n{log}");
    assert_eq!(count(&log, "Docker API reachable again"), 1, "one line for the return:\n{log}");
    // discovery works again: a scale-up is served
    let before = names(&swarm, WHOAMI);
    swarm.docker(&["service", "scale", "-d", &format!("{WHOAMI}=4")]);
    swarm.wait_running(WHOAMI, 4, Duration::from_secs(20));
    let all = names(&swarm, WHOAMI);
    assert_eq!(all.difference(&before).count(), 1, "one new task: {before:?} -> {all:?}");
    let reached = fresh_reach(port, &all, 200);
    assert_eq!(reached, all, "after the hang, the new task must be discovered and served");

    // --- crash: containers run on; the holder's socket (host network, no docker-proxy) and sticky
    // with it keep serving on the client port
    swarm.kill_dockerd();
    let crashed = Instant::now();
    let (mut served, mut repinned) = (0, 0);
    // 30 s, with a forged cookie in every other request: each is a logged re-pin (sticky logs up to
    // 20 a second per worker). With dockerd dead nobody drains the container's stderr pipe: a
    // process that blocks on a full log pipe stops serving after ~25 s of this (it did).
    while crashed.elapsed() < Duration::from_secs(30) {
        let r = http_get(addr, "localhost", Some(&cookie));
        assert_eq!(
            r.as_ref().ok().and_then(Response::whoami),
            Some(pinned.as_str()),
            "with dockerd dead for {:?}, sticky must keep serving its pinned client: {r:?}",
            crashed.elapsed()
        );
        served += 1;
        let forged = format!("{SEED_COOKIE}=forged-{served}");
        let r = http_get(addr, "localhost", Some(&forged));
        assert!(
            r.as_ref().ok().and_then(Response::whoami).is_some(),
            "with dockerd dead for {:?}, a re-pinned client must be served: {r:?}",
            crashed.elapsed()
        );
        repinned += 1;
    }
    eprintln!("dockerd dead 30 s: {served} pinned and {repinned} re-pinned requests served on the client port {addr}");

    // --- restart: Swarm replaces every task; the new sticky discovers the new whoami tasks
    let old = all;
    swarm.restart_dockerd();
    let restarted = Instant::now();
    let recovered = wait::until(Duration::from_secs(90), || {
        http_get(addr, "localhost", None).ok().as_ref().and_then(Response::whoami).is_some_and(|n| !old.contains(n))
    });
    assert!(recovered, "after dockerd's restart, sticky must serve the new tasks:\n{}", swarm.log_tail());
    eprintln!("published port serving new tasks {:?} after dockerd's restart", restarted.elapsed());
    swarm.wait_running(WHOAMI, 4, Duration::from_secs(30));
    let now = names(&swarm, WHOAMI);
    assert!(old.is_disjoint(&now), "Swarm replaced every task: {old:?} -> {now:?}");
    assert_eq!(fresh_reach(port, &now, 200), now, "every new task is served");
    let moved = http_get(addr, "localhost", Some(&cookie)).expect("old cookie");
    assert!(moved.whoami().is_some_and(|n| now.contains(n)) && moved.cookie(SEED_COOKIE).is_some(), "{moved:?}");
    eprintln!("whole test {:?}", suite.elapsed());
}

/// Host names of the addresses added to the host's `docker_gwbridge`, removed on drop.
struct ExtraAddrs(Vec<String>);

/// Five tcp connections from each client address to `vip`: all of a client's must reach one task of
/// the tcp service (`db-...`); returns which one each client reached.
fn task_per_client(vip: SocketAddrV4, sources: &[Ipv4Addr]) -> BTreeMap<Ipv4Addr, String> {
    let mut per_source = BTreeMap::new();
    for s in sources {
        let bodies: BTreeSet<String> = (0..5)
            .map(|_| crate::l4::get_once(vip, *s).unwrap_or_else(|e| panic!("tcp connection from {s}: {e:?}")))
            .collect();
        assert_eq!(bodies.len(), 1, "every connection of client {s} must reach one task: {bodies:?}");
        let body = bodies.into_iter().next().unwrap_or_default();
        assert!(body.starts_with("I'm db-"), "the tcp service's tasks answer, not {body:?}");
        per_source.insert(*s, body);
    }
    per_source
}

/// Twelve client addresses for connections from this host, added to the test daemon's
/// `docker_gwbridge` in its /16, far above what Docker hands out: the bridge's gateway, the addresses,
/// and the guard that removes them.
fn gwbridge_clients(swarm: &Swarm) -> (Ipv4Addr, Vec<Ipv4Addr>, ExtraAddrs) {
    let host_gw = swarm.docker(&[
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        "docker_gwbridge",
    ]);
    let host_gw: Ipv4Addr = host_gw.parse().unwrap_or_else(|e| panic!("gwbridge gateway {host_gw:?}: {e}"));
    let [o1, o2, _, _] = host_gw.octets();
    let sources: Vec<Ipv4Addr> = (1..=12).map(|i| Ipv4Addr::new(o1, o2, 250, i)).collect();
    let extra = ExtraAddrs(sources.iter().map(|s| format!("{s}/32")).collect());
    for s in &sources {
        let out = std::process::Command::new("ip")
            .args(["addr", "add", &format!("{s}/32"), "dev", "docker_gwbridge"])
            .output()
            .expect("ip addr add");
        assert!(out.status.success(), "ip addr add {s}: {}", String::from_utf8_lossy(&out.stderr));
    }
    (host_gw, sources, extra)
}

impl Drop for ExtraAddrs {
    fn drop(&mut self) {
        for a in &self.0 {
            let _ = std::process::Command::new("ip").args(["addr", "del", a, "dev", "docker_gwbridge"]).output();
        }
    }
}

/// A second service by sticky.* labels and a third by Traefik v2/v3 labels, each routed by Host;
/// two sticky instances with the same key honour each other's cookies; a tcp-mode service by labels
/// keeps each client on one task and spreads clients over the tasks.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario on one Swarm (starting it is most of the cost): each step runs on the state the one before left"
)]
fn label_sets_route_by_host_two_instances_agree_and_tcp_by_labels() {
    require_swarm!();
    let suite = Instant::now();
    let swarm = Swarm::start();
    seed(&swarm, &["--endpoint-mode", "dnsrr", "--hostname", "web-{{.Task.Slot}}"]);
    let common = ["--network", "whoaminet", "--init", "--stop-grace-period", "1s", "--endpoint-mode", "dnsrr"];
    let create = |name: &str, replicas: &str, labels: &[&str]| {
        let hostname = format!("{name}-{{{{.Task.Slot}}}}");
        let mut args = vec!["service", "create", "-d", "--no-resolve-image", "--name", name, "--replicas", replicas];
        args.extend_from_slice(&common);
        args.extend_from_slice(&["--hostname", &hostname]);
        for l in labels {
            args.extend_from_slice(&["--label", l]);
        }
        args.extend_from_slice(&[IMAGE, "whoami", "--listen", "0.0.0.0:8000"]);
        swarm.docker(&args);
    };
    create("api", "2", &["sticky.port=8000", "sticky.rule=Host(`api.example`)"]);
    create(
        "shop",
        "2",
        &[
            "traefik.enable=true",
            "traefik.http.routers.shop.rule=Host(`shop.example`)",
            "traefik.http.services.shop.loadbalancer.server.port=8000",
            "traefik.http.services.shop.loadbalancer.sticky.cookie.name=shop_session",
        ],
    );
    create(
        "db",
        "3",
        &["sticky.mode=tcp", "sticky.port=8000", "sticky.listen.port=15432", "sticky.affinity.timeout=10m"],
    );
    for (s, n) in [(WHOAMI, 3), ("api", 2), ("shop", 2), ("db", 3)] {
        swarm.wait_running(s, n, Duration::from_secs(30));
    }
    let (port_a, port_b) = (free_listen_port(), free_listen_port());
    // the tcp service's port in the holder's command, as the stack file's comment says to add it
    let stack = std::fs::read_to_string(workspace_file("deploy/stack.yml")).expect("read deploy/stack.yml");
    let example = "      # - --listen=0.0.0.0:5432\n";
    assert!(stack.contains(example), "deploy/stack.yml shows how to hold a tcp service's port");
    let with_tcp = swarm.socket_dir().join("stack-tcp.yml");
    std::fs::write(&with_tcp, stack.replace(example, "      - --listen=0.0.0.0:15432\n"))
        .expect("write the stack file");
    deploy_stack_file(&swarm, "sticky", port_a, &with_tcp);
    deploy_sticky(&swarm, "sticky2", port_b);
    let (a, b) = (loopback(port_a), loopback(port_b));

    // --- routing by Host, each service with its own cookie name
    for (host, prefix, cookie) in [
        ("api.example", "api-", "sticky"),
        ("shop.example", "shop-", "shop_session"),
        ("other.example", "web-", SEED_COOKIE),
    ] {
        let mut seen = BTreeSet::new();
        for _ in 0..6 {
            let r = http_get(a, host, None).expect("request");
            let name = r.whoami().unwrap_or_else(|| panic!("Host {host}: {r:?}"));
            assert!(name.starts_with(prefix), "Host {host} must reach a {prefix}* task, not {name}");
            assert!(r.cookie(cookie).is_some(), "Host {host} sets cookie {cookie}: {r:?}");
            seen.insert(name.to_owned());
        }
        assert!(seen.len() >= 2, "new sessions of {host} spread over its tasks: {seen:?}");
    }

    // --- two instances, one key: each honours the other's cookies
    for (from, to) in [(a, b), (b, a)] {
        for _ in 0..6 {
            let r = http_get(from, "api.example", None).expect("request");
            let name = r.whoami().expect("whoami").to_owned();
            let cookie = format!("sticky={}", r.cookie("sticky").expect("a cookie"));
            let other = http_get(to, "api.example", Some(&cookie)).expect("request at the other instance");
            assert_eq!(other.whoami(), Some(name.as_str()), "{to} must honour {from}'s cookie: {other:?}");
            assert!(other.cookie("sticky").is_none(), "a valid cookie from the other instance is kept as is");
        }
    }

    // --- tcp mode by labels: client affinity per source address, spread over the tasks. The port is
    // the holder's (host network): connections from this host's own addresses, the client's kept
    let (host_gw, sources, _extra) = gwbridge_clients(&swarm);
    let vip = SocketAddrV4::new(host_gw, 15432);
    let up = wait::until(Duration::from_secs(10), || crate::l4::get_once(vip, sources[0]).is_ok());
    assert!(up, "sticky must listen on {vip} for the tcp service:\n{}", swarm.service_logs("sticky_sticky"));
    let per_source = task_per_client(vip, &sources);
    let tasks: BTreeSet<&String> = per_source.values().collect();
    eprintln!("tcp: 12 clients over {} tasks: {per_source:?}", tasks.len());
    assert!(tasks.len() >= 2, "clients spread over the tcp service's tasks: {per_source:?}");

    // --- sticky's own update under tcp load: the tcp port is the holder's too, so the new task
    // accepts on it while the old one stops; the same clients reach the same tasks (Maglev)
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, per_source, sources) = (stop.clone(), per_source.clone(), sources.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let (mut connections, mut failed, mut moved) = (0u64, Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(90) {
                for s in &sources {
                    connections += 1;
                    match crate::l4::get_once(vip, *s) {
                        Ok(body) if Some(&body) == per_source.get(s) => {}
                        Ok(body) => moved.push((*s, body)),
                        Err(e) => failed.push((*s, format!("{e:?}"))),
                    }
                }
            }
            (connections, failed, moved)
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let updating = Instant::now();
    swarm.docker(&["service", "update", "-d", "--no-resolve-image", "--force", "sticky_sticky"]);
    let took = wait_updated(&swarm, "sticky_sticky", updating);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (connections, failed, moved) = load.join().expect("the tcp load thread must not panic");
    eprintln!(
        "tcp through sticky's update ({:.1} s): {connections} connections, {} failed, {} moved",
        took.as_secs_f64(),
        failed.len(),
        moved.len()
    );
    assert!(connections > 100, "the tcp load ran: {connections}");
    assert!(failed.is_empty(), "no tcp connection may fail through sticky's update: {failed:?}");
    assert!(moved.is_empty(), "every tcp client keeps its task: {moved:?}");
    eprintln!("whole test {:?}", suite.elapsed());
}

/// Waits until `service`'s update is completed and it runs exactly one task again; how long that took.
fn wait_updated(swarm: &Swarm, service: &str, since: Instant) -> Duration {
    let done = wait::until(Duration::from_secs(90), || {
        swarm.docker(&["service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", service])
            == "completed"
    });
    assert!(done, "the update of {service} must complete:\n{}", swarm.docker(&["service", "ps", service]));
    let took = since.elapsed();
    wait_settled(swarm, service, 1);
    took
}

/// One operation on a stack under the client loop: its figures printed, none failed, none moved.
fn under_load(swarm: &Swarm, port: u16, what: &str, service: &str, update: &[&str]) {
    let before = swarm.running_tasks(service);
    let clients = ClientLoop::start(port, 20, SEED_COOKIE, Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let mut args = vec!["service", "update", "-d", "--no-resolve-image"];
    args.extend_from_slice(update);
    args.push(service);
    swarm.docker(&args);
    let took = wait_updated(swarm, service, started);
    std::thread::sleep(Duration::from_secs(1));
    let report = clients.finish();
    let after = swarm.running_tasks(service);
    eprintln!(
        "{what}: {} requests, {} failed, {} moved clients; update completed in {:.1} s, slowest request {} ms",
        report.requests,
        report.failures.len(),
        report.moves.len(),
        took.as_secs_f64(),
        report.slowest.as_millis()
    );
    assert_ne!(before, after, "{what}: the task of {service} was replaced");
    assert!(report.requests > 500, "{what}: the load ran ({} requests)", report.requests);
    assert!(report.failures.is_empty(), "{what}: no request may fail: {:?}", report.failures);
    assert!(report.moves.is_empty(), "{what}: every client keeps its task (one cookie key): {:?}", report.moves);
}

/// Issue 14 point 4: sticky updates itself, and its listener holder updates itself, under load,
/// without a failed request and without moving a client. The stack is deployed as the README says;
/// the client port is the holder's socket, which sticky's old and new tasks share during a
/// start-first update.
#[test]
fn sticky_and_its_holder_update_themselves_under_load_without_a_failure() {
    require_swarm!();
    let suite = Instant::now();
    let swarm = Swarm::start();
    seed(&swarm, &["--endpoint-mode", "dnsrr"]);
    swarm.wait_running(WHOAMI, 3, Duration::from_secs(30));
    let port = free_listen_port();
    deploy_sticky(&swarm, "sticky", port);
    under_load(&swarm, port, "sticky update --force", "sticky_sticky", &["--force"]);
    under_load(&swarm, port, "sticky env change", "sticky_sticky", &["--env-add", "STICKY_IDLE_TIMEOUT=61s"]);
    under_load(&swarm, port, "holder update --force", "sticky_hold", &["--force"]);
    // the new holder hands the sockets out: one more update of sticky takes them from it
    under_load(&swarm, port, "sticky update after the holder's", "sticky_sticky", &["--force"]);
    let log = swarm.service_logs("sticky_hold");
    assert!(log.contains("taking over its listening sockets"), "the new holder took the sockets over:\n{log}");
    eprintln!("whole test {:?}", suite.elapsed());
}

/// Issue 14 point 2 at Swarm level: 5 tasks, 60 pinned clients; 3 tasks drained through the admin
/// socket as deployed (README's lines), then stopped: the displaced clients spread over the two
/// remaining tasks, which end within 20% of each other. New sessions while the 3 drain spread
/// over the two as well. Nothing fails.
#[test]
fn drain_three_of_five_spreads_the_displaced_clients_evenly() {
    require_swarm!();
    let suite = Instant::now();
    let swarm = Swarm::start();
    // no restart: a stopped task stays stopped, so the three drained ones leave for good
    seed(&swarm, &["--endpoint-mode", "dnsrr", "--restart-condition", "none"]);
    swarm.docker(&["service", "scale", "-d", &format!("{WHOAMI}=5")]);
    swarm.wait_running(WHOAMI, 5, Duration::from_secs(30));
    let port = free_listen_port();
    deploy_sticky(&swarm, "sticky", port);
    let tasks = swarm.task_containers(WHOAMI);
    let clients = ClientLoop::start(port, 60, SEED_COOKIE, Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(2));

    // drain three, by the README's admin lines with TASK set to each one's 12-character id
    let admin = readme_line("ADMIN=", "sticky_admin");
    let drain = readme_line("curl --unix-socket", "/drain");
    let (drained, kept) = tasks.split_at(3);
    for (task, _) in drained {
        let said = paste(&swarm, &[admin.clone(), format!("TASK={}", &task[..12]), drain.clone()]);
        assert!(said.contains("draining"), "{said}");
    }
    let kept_names: BTreeSet<String> = kept.iter().map(|(_, c)| short(c).to_owned()).collect();
    let fresh: Vec<String> = (0..40)
        .filter_map(|_| http_get(loopback(port), "localhost", None).ok())
        .filter_map(|r| r.whoami().map(str::to_owned))
        .collect();
    let fresh_split: BTreeMap<&String, usize> =
        kept_names.iter().map(|n| (n, fresh.iter().filter(|f| *f == n).count())).collect();
    eprintln!("drain: 40 new sessions while 3 of 5 drain: {fresh_split:?}");
    assert_eq!(fresh.len(), 40, "every new session is served");
    assert!(fresh.iter().all(|f| kept_names.contains(f)), "new sessions avoid the draining tasks: {fresh:?}");

    // the drained tasks stop: their clients are displaced
    let pinned_before = {
        std::thread::sleep(Duration::from_millis(500));
        names(&swarm, WHOAMI)
    };
    for (_, container) in drained {
        swarm.docker(&["stop", container]);
    }
    wait_settled(&swarm, WHOAMI, 2);
    std::thread::sleep(Duration::from_secs(2));
    let report = clients.finish();
    let drained_names: BTreeSet<String> = drained.iter().map(|(_, c)| short(c).to_owned()).collect();
    let displaced: BTreeSet<usize> =
        report.moves.iter().filter(|m| drained_names.contains(&m.1)).map(|m| m.0).collect();
    let split = |who: &dyn Fn(usize) -> bool| -> BTreeMap<String, usize> {
        let mut split: BTreeMap<String, usize> = kept_names.iter().map(|n| (n.clone(), 0)).collect();
        for (_, task) in report.last.iter().filter(|(c, _)| who(**c)) {
            *split.entry(task.clone()).or_default() += 1;
        }
        split
    };
    let all = split(&|_| true);
    let moved = split(&|c| displaced.contains(&c));
    eprintln!(
        "drain 3 of 5 (tasks before {}), 60 clients: {} requests, {} failed, {} displaced; displaced split {moved:?}, final split {all:?}",
        pinned_before.len(),
        report.requests,
        report.failures.len(),
        displaced.len()
    );
    assert!(report.failures.is_empty(), "no request may fail: {:?}", report.failures);
    assert_eq!(report.last.len(), 60, "every client was served");
    assert!(report.last.values().all(|t| kept_names.contains(t)), "every client ends on a remaining task: {all:?}");
    assert!(displaced.len() >= 30, "the three tasks' clients (about 36) were displaced: {}", displaced.len());
    let (lo, hi) = (all.values().min().copied().unwrap_or(0), all.values().max().copied().unwrap_or(0));
    assert!(lo * 10 >= hi * 8, "the two remaining tasks end within 20% of each other: {all:?}");
    let (lo, hi) = (moved.values().min().copied().unwrap_or(0), moved.values().max().copied().unwrap_or(0));
    assert!(lo * 10 >= hi * 8, "the displaced clients spread within 20%: {moved:?}");
    eprintln!("whole test {:?}", suite.elapsed());
}

/// `deploy/stack-https.yml` as the README pastes it (secrets `site.crt`/`site.key`, then `stack
/// deploy`): the holder holds both ports, sticky takes both, HTTPS and plain HTTP are served, and
/// nothing is published.
#[test]
fn https_stack_serves_both_ports_through_the_holder() {
    require_swarm!();
    let swarm = Swarm::start();
    seed(&swarm, &["--endpoint-mode", "dnsrr"]);
    swarm.wait_running(WHOAMI, 3, Duration::from_secs(30));
    let dir = swarm.socket_dir();
    let (crt, key) = (dir.join("site.crt"), dir.join("site.key"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=app.example", "-addext", "subjectAltName=DNS:app.example", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    swarm.docker(&["secret", "create", "site.crt", crt.to_str().expect("utf-8 path")]);
    swarm.docker(&["secret", "create", "site.key", key.to_str().expect("utf-8 path")]);
    let (port, tls_port) = (free_listen_port(), free_listen_port());
    let env = vec![
        ("STICKY_PORT", port.to_string()),
        ("STICKY_TLS_PORT", tls_port.to_string()),
        ("DOCKER_SOCKET", swarm.socket().display().to_string()),
    ];
    swarm.deploy_stack("sticky", &workspace_file("deploy/stack-https.yml"), &env);
    swarm.wait_running("sticky_hold", 1, Duration::from_secs(30));
    swarm.wait_running("sticky_sticky", 1, Duration::from_secs(30));
    let https = |path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sk", "--max-time", "5", "--resolve", &format!("app.example:{tls_port}:127.0.0.1")])
            .arg(format!("https://app.example:{tls_port}{path}"))
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let served = wait::until(Duration::from_secs(20), || https("/").starts_with("I'm "));
    assert!(served, "HTTPS through the holder's port must reach whoami:\n{}", swarm.service_logs("sticky_sticky"));
    let plain = http_get(loopback(port), "app.example", None).expect("plain HTTP");
    assert!(plain.whoami().is_some(), "plain HTTP is served too: {plain:?}");
    for service in ["sticky_sticky", "sticky_hold"] {
        let published = swarm.docker(&["service", "inspect", "--format", "{{json .Spec.EndpointSpec.Ports}}", service]);
        assert_eq!(published.matches("PublishedPort").count(), 0, "{service} publishes nothing: {published}");
    }
    eprintln!("https stack: {} over HTTPS on {tls_port}, plain on {port}", https("/").trim());
}

// === issue 14 point 5: a tcp service from labels in the kernel, inside sticky's container ===

/// Sends SIGSTOP to a process, and SIGCONT when dropped, so that a failing test never leaves
/// sticky stopped.
struct Stopped(String);

impl Stopped {
    fn stop(pid: &str) -> Self {
        let out = std::process::Command::new("kill").args(["-STOP", pid]).output().expect("run kill");
        assert!(out.status.success(), "kill -STOP {pid}: {}", String::from_utf8_lossy(&out.stderr));
        Self(pid.to_owned())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-CONT", &self.0]).output();
    }
}

/// The state letter of process `pid` (`T`: stopped), from /proc.
fn process_state(pid: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// One request to the admin API over its unix socket (`POST`s as JSON); the body of the answer.
fn admin_request(socket: &std::path::Path, method: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect to the admin socket {}: {e}", socket.display()));
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("set a read timeout");
    let json = if method == "POST" { "Content-Type: application/json\r\nContent-Length: 0\r\n" } else { "" };
    let head = format!("{method} {path} HTTP/1.1\r\nHost: sticky\r\n{json}Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("send to the admin socket");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the admin answer");
    answer.split_once("\r\n\r\n").map_or_else(String::new, |(_, b)| b.to_owned())
}

/// `service`'s rows of `/api/backends`' `tcp_backends`.
fn tcp_rows(report: &str, service: &str) -> Vec<serde_json::Value> {
    let doc: serde_json::Value =
        serde_json::from_str(report).unwrap_or_else(|e| panic!("/api/backends is JSON ({e}): {report}"));
    doc["tcp_backends"]
        .as_array()
        .unwrap_or_else(|| panic!("tcp_backends in {report}"))
        .iter()
        .filter(|r| r["service"] == service)
        .cloned()
        .collect()
}

/// A tcp service labelled `sticky.tcp.path=kernel`, its port published by sticky's own service in
/// host mode as deploy/stack.yml's comments say: the tc program inside sticky's container serves
/// it. 12 client addresses on `docker_gwbridge` (as Docker's DNAT delivers a host-mode port's
/// clients) keep one task each and spread over the tasks; then sticky's process is stopped (SIGSTOP) and
/// every established connection goes on and every new one is served on the client's task (the
/// bytes never pass through the process); the published port itself (docker-proxy here) serves
/// too. After SIGCONT, the service is in `/api/backends` over the admin socket with its three
/// tasks on the kernel path, and a drained task gets no new connection while its open ones go on.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario on one Swarm (starting it is most of the cost): each step runs on the state the one before left"
)]
fn tcp_service_in_the_kernel_serves_while_sticky_is_stopped() {
    require_swarm!();
    let suite = Instant::now();
    let swarm = Swarm::start();
    seed(&swarm, &[]);
    let (port, tcp_port) = (free_listen_port(), free_listen_port());
    let listen_label = format!("sticky.listen.port={tcp_port}");
    swarm.docker(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        "db",
        "--replicas",
        "3",
        "--network",
        "whoaminet",
        "--init",
        "--stop-grace-period",
        "1s",
        "--endpoint-mode",
        "dnsrr",
        "--hostname",
        "db-{{.Task.Slot}}",
        "--label",
        "sticky.mode=tcp",
        "--label",
        "sticky.port=8000",
        "--label",
        &listen_label,
        "--label",
        "sticky.tcp.path=kernel",
        "--label",
        "sticky.affinity.timeout=10m",
        IMAGE,
        "whoami",
        "--listen",
        "0.0.0.0:8000",
    ]);
    swarm.wait_running("db", 3, Duration::from_secs(30));
    // the stack file with the tcp port published by sticky in host mode and stop-first updates,
    // exactly as its comments say
    let stack = std::fs::read_to_string(workspace_file("deploy/stack.yml")).expect("read deploy/stack.yml");
    let ports = "    # ports:\n    #   - { target: 5432, published: 5432, protocol: tcp, mode: host }\n";
    let order = "      # (stop-first with a tcp service in the kernel: its host-mode port, above)\n      update_config:\n        order: start-first\n";
    assert!(stack.contains(ports) && stack.contains(order), "deploy/stack.yml shows how to publish a kernel tcp port");
    let edited = stack
        .replace(
            ports,
            &format!(
                "    ports:\n      - {{ target: {tcp_port}, published: {tcp_port}, protocol: tcp, mode: host }}\n"
            ),
        )
        .replacen(order, "      update_config:\n        order: stop-first\n", 1);
    let file = swarm.socket_dir().join("stack-kernel.yml");
    std::fs::write(&file, edited).expect("write the stack file");
    deploy_stack_file(&swarm, "sticky", port, &file);
    wait_log(&swarm, &["sticky.tcp.path=kernel", "in the kernel"]);

    let (_, container) = swarm.task_containers("sticky_sticky").into_iter().next().expect("sticky's task runs");
    let gw = swarm.gwbridge_addr(&container).expect("sticky's container is on docker_gwbridge");
    let vip = SocketAddrV4::new(gw.parse().unwrap_or_else(|e| panic!("{gw}: {e}")), tcp_port);
    let (_, sources, _extra) = gwbridge_clients(&swarm);
    let up = wait::until(Duration::from_secs(10), || crate::l4::get_once(vip, sources[0]).is_ok());
    assert!(up, "the kernel path must serve {vip}:\n{}", swarm.service_logs("sticky_sticky"));
    let per_source = task_per_client(vip, &sources);
    let tasks: BTreeSet<&String> = per_source.values().collect();
    eprintln!("tcp in the kernel: 12 clients over {} tasks: {per_source:?}", tasks.len());
    assert!(tasks.len() >= 2, "clients spread over the tcp service's tasks: {per_source:?}");
    let published = |n: usize| {
        (0..n)
            .filter(|_| {
                http_get(loopback(tcp_port), "localhost", None)
                    .is_ok_and(|r| r.whoami().is_some_and(|w| w.starts_with("db-")))
            })
            .count()
    };
    assert_eq!(published(3), 3, "the host-mode published port reaches the tasks through the kernel path");

    // established connections, one per client, each answered once already
    let mut established: Vec<(Ipv4Addr, http::Client)> = sources
        .iter()
        .map(|s| {
            let mut c = crate::l4::connect(vip, *s).unwrap_or_else(|e| panic!("connect from {s}: {e:?}"));
            let body = c.get("/").unwrap_or_else(|e| panic!("first request from {s}: {e:?}")).into_text();
            assert_eq!(Some(&body), per_source.get(s), "affinity: client {s}");
            (*s, c)
        })
        .collect();

    // --- sticky's process stopped: the kernel serves on
    let pid = swarm.docker(&["inspect", "--format", "{{.State.Pid}}", &container]);
    let stopped = Stopped::stop(&pid);
    let is_stopped = wait::until(Duration::from_secs(5), || process_state(&pid) == Some('T'));
    assert!(is_stopped, "sticky's process {pid} must be stopped: {:?}", process_state(&pid));
    let (mut old_ok, mut new_ok, mut failed, mut moved) = (0usize, 0usize, Vec::new(), Vec::new());
    let stopped_at = Instant::now();
    for round in 0..3 {
        // the rounds 1 s apart: sticky stays stopped for over 2 s
        if round > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        for (s, c) in &mut established {
            match c.get("/") {
                Ok(r) if per_source.get(s).map(String::as_str) == Some(&*r.text()) => old_ok += 1,
                Ok(r) => moved.push((*s, r.into_text())),
                Err(e) => failed.push((*s, format!("established: {e:?}"))),
            }
        }
        for s in &sources {
            match crate::l4::get_once(vip, *s) {
                Ok(body) if Some(&body) == per_source.get(s) => new_ok += 1,
                Ok(body) => moved.push((*s, body)),
                Err(e) => failed.push((*s, format!("new: {e:?}"))),
            }
        }
    }
    let published_ok = published(5);
    let still_stopped = process_state(&pid) == Some('T');
    drop(stopped);
    eprintln!(
        "sticky SIGSTOPped for {:.1} s: established {old_ok}/36 answered, new {new_ok}/36 served on the client's task, \
         published port {published_ok}/5, {} failed, {} moved",
        stopped_at.elapsed().as_secs_f64(),
        failed.len(),
        moved.len()
    );
    assert!(still_stopped, "sticky stayed stopped through the checks");
    assert!(failed.is_empty(), "no connection may fail while sticky is stopped: {failed:?}");
    assert!(moved.is_empty(), "every client keeps its task while sticky is stopped: {moved:?}");
    assert_eq!((old_ok, new_ok, published_ok), (36, 36, 5));
    let resumed = wait::until(Duration::from_secs(5), || process_state(&pid).is_some_and(|c| c != 'T'));
    assert!(resumed, "sticky's process continues");

    // --- visible in the admin API over its socket, with its tasks on the kernel path
    let volume = swarm.docker(&["volume", "inspect", "--format", "{{.Mountpoint}}", "sticky_admin"]);
    let socket = std::path::PathBuf::from(volume).join("admin.sock");
    let report = admin_request(&socket, "GET", "/api/backends");
    let rows = tcp_rows(&report, "db");
    let db_tasks: BTreeSet<String> = swarm.task_containers("db").into_iter().map(|(t, _)| t).collect();
    let ids: BTreeSet<String> = rows.iter().filter_map(|r| r["id"].as_str().map(str::to_owned)).collect();
    assert_eq!(ids, db_tasks, "/api/backends lists the tcp service's tasks: {report}");
    assert!(rows.iter().all(|r| r["path"] == "kernel" && r["state"] == "active"), "{report}");
    let flows: u64 = rows.iter().filter_map(|r| r["active"].as_u64()).sum();
    eprintln!(
        "/api/backends: db's {} tasks on the kernel path, {flows} flows in CONNS (finished ones until evicted)",
        rows.len()
    );
    assert!(flows >= 12, "the 12 established connections are the kernel's flows: {report}");
    let metrics = admin_request(&socket, "GET", "/metrics");
    let draining_rows = metrics.lines().filter(|l| l.starts_with("sticky_l4_backend_draining{service=\"db\"")).count();
    assert_eq!(draining_rows, 3, "each task's drain state is on /metrics:\n{metrics}");

    // --- drain one task through the admin socket: new connections avoid it, open ones go on
    let drained_task = rows
        .iter()
        .filter_map(|r| r["id"].as_str())
        .find(|id| {
            let slot = swarm.docker(&["inspect", "--format", "{{.Slot}}", id]);
            per_source.values().any(|b| b.contains(&format!("db-{slot}")))
        })
        .expect("some client is on some task")
        .to_owned();
    let slot = swarm.docker(&["inspect", "--format", "{{.Slot}}", &drained_task]);
    let drained_name = format!("db-{slot}");
    let said = admin_request(&socket, "POST", &format!("/api/services/db/backends/{}/drain", &drained_task[..12]));
    assert!(said.contains("draining"), "{said}");
    std::thread::sleep(Duration::from_millis(500));
    let report = admin_request(&socket, "GET", "/api/backends");
    let state =
        tcp_rows(&report, "db").into_iter().find(|r| r["id"] == drained_task.as_str()).map(|r| r["state"].clone());
    assert_eq!(state, Some(serde_json::json!("draining")), "{report}");
    let mut fresh = BTreeMap::new();
    for s in &sources {
        let body = crate::l4::get_once(vip, *s).unwrap_or_else(|e| panic!("new connection from {s}: {e:?}"));
        assert!(!body.contains(&drained_name), "no new connection reaches drained {drained_name}: {s} got {body}");
        fresh.insert(*s, body);
    }
    let mut kept = 0;
    for (s, c) in &mut established {
        if per_source[s].contains(&drained_name) {
            let body = c.get("/").unwrap_or_else(|e| panic!("open connection of {s} to the drained task: {e:?}"));
            assert!(body.text().contains(&drained_name), "an open connection stays on its task: {body:?}");
            kept += 1;
        }
    }
    let moved_clients = sources.iter().filter(|s| fresh[*s] != per_source[*s]).count();
    let stayed: Vec<&Ipv4Addr> =
        sources.iter().filter(|s| !per_source[*s].contains(&drained_name) && fresh[*s] != per_source[*s]).collect();
    assert!(stayed.is_empty(), "clients of the other tasks keep them (affinity): {stayed:?}");
    eprintln!(
        "drained {drained_name}: {moved_clients} clients moved for new connections, {kept} open connections kept"
    );
    let said = admin_request(&socket, "POST", &format!("/api/services/db/backends/{drained_task}/activate"));
    assert!(said.contains("active"), "{said}");
    drop(established);

    // --- the price: sticky's own update is stop-first (the host-mode port) and the program goes
    // with the old task; measured through the published port, one request every 20 ms
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut requests, mut failed, mut first_fail, mut last_fail) = (0u32, 0u32, None, None);
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                requests += 1;
                let ok = http_get(loopback(tcp_port), "localhost", None)
                    .is_ok_and(|r| r.whoami().is_some_and(|w| w.starts_with("db-")));
                if !ok {
                    failed += 1;
                    first_fail.get_or_insert_with(Instant::now);
                    last_fail = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let gap = first_fail.zip(last_fail).map_or(Duration::ZERO, |(a, b)| b - a);
            (requests, failed, gap)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let updating = Instant::now();
    swarm.docker(&["service", "update", "-d", "--no-resolve-image", "--force", "sticky_sticky"]);
    let took = wait_updated(&swarm, "sticky_sticky", updating);
    let back = wait::until(Duration::from_secs(30), || published(1) == 1);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (requests, failed, gap) = probe.join().expect("the probe thread must not panic");
    eprintln!(
        "sticky's stop-first update with a kernel tcp service: completed in {:.1} s; published port: {requests} requests, \
         {failed} failed over {:.2} s",
        took.as_secs_f64(),
        gap.as_secs_f64()
    );
    assert!(back, "the new task serves the kernel tcp service again:\n{}", swarm.service_logs("sticky_sticky"));
    eprintln!("whole test {:?}", suite.elapsed());
}

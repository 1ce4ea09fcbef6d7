//! End-to-end tests of WebSocket stickiness through the proxy, and of `sticky demo`'s printed commands.

mod common;

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::{Proc, get_ok, sticky, who, whoami};
use futures_util::{SinkExt as _, StreamExt as _};
use testkit::{ChildGuard, wait};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

/// Opens a WebSocket through `lb` with an optional cookie, sends `messages`, returns the 101's
/// `x-whoami`, its sticky Set-Cookie value and the echoes.
async fn ws_session(
    lb: std::net::SocketAddr,
    cookie: Option<&str>,
    messages: &[&str],
) -> (String, Option<String>, Vec<String>) {
    let mut req = format!("ws://{lb}/ws").into_client_request().expect("a valid ws URL");
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().expect("a valid header"));
    }
    let tcp = tokio::net::TcpStream::connect(lb).await.expect("the proxy must accept");
    let (mut ws, resp) = tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::client_async(req, tcp))
        .await
        .expect("handshake within 5 s")
        .expect("the handshake through the proxy must succeed");
    let backend =
        resp.headers().get("x-whoami").and_then(|v| v.to_str().ok()).expect("the backend names itself").to_owned();
    let set_cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("sticky=").map(|r| r.split(';').next().unwrap_or("").to_owned()));
    let mut echoes = Vec::new();
    for m in messages {
        ws.send(Message::text(*m)).await.expect("send over the relay");
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo within 5 s")
            .expect("an echo")
            .expect("a message");
        echoes.push(reply.into_text().expect("text").as_str().to_owned());
    }
    let _ = ws.close(None).await;
    (backend, set_cookie, echoes)
}

#[test]
fn websocket_echo_through_the_proxy_stays_on_the_pinned_backend() {
    let (b1, b2, b3): (Proc, Proc, Proc) = (whoami("b1"), whoami("b2"), whoami("b3"));
    let lb = sticky(&[&b1, &b2, &b3], &["b1", "b2", "b3"], &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    // without a cookie: the 101 carries the new session's cookie
    let (first, cookie, echoes) = rt.block_on(ws_session(lb.addr, None, &["hello"]));
    assert_eq!(echoes, vec![format!("I'm {first}: hello")]);
    let cookie = format!("sticky={}", cookie.expect("the 101 of a new session sets the cookie"));
    // plain HTTP with that cookie goes to the same backend
    assert_eq!(who(&get_ok(lb.addr, "/", &[("Cookie", &cookie)])), first);
    // and so does every later WebSocket, with the messages relayed both ways
    for round in 0..5 {
        let msgs = ["one", "two", "three"];
        let (backend, again, echoes) = rt.block_on(ws_session(lb.addr, Some(&cookie), &msgs));
        assert_eq!(backend, first, "round {round}: the upgrade must go to the pinned backend");
        assert!(again.is_none(), "a valid cookie is not set again");
        let expected: Vec<String> = msgs.iter().map(|m| format!("I'm {first}: {m}")).collect();
        assert_eq!(echoes, expected);
    }
    let admin = lb.admin.expect("admin");
    let series = format!(r#"sticky_upgrades_total{{service="default",backend="{first}"}}"#);
    // the counter is bumped on the relay task: wait for it
    let counted = wait::until(Duration::from_secs(5), || {
        testkit::prometheus::sample(&get_ok(admin, "/metrics", &[]).into_text(), &series) == Some(6)
    });
    assert!(counted, "six upgrades counted on {first}");
}

#[test]
fn demo_prints_curl_commands_that_work() {
    // port 0: the demo prints the address it bound, so no free-port race
    let mut child = Command::new(common::STICKY)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sticky demo must start");
    let stdout = child.stdout.take().expect("piped stdout");
    let _guard = ChildGuard::adopt("sticky demo", child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        let done = line.starts_with("Serving until Ctrl-C");
        lines.push(line);
        if done {
            break;
        }
    }
    let url = lines
        .iter()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:") && !w.ends_with(":0/")))
        .unwrap_or_else(|| panic!("the URL is printed: {lines:?}"))
        .to_owned();
    let commands: Vec<&str> =
        lines.iter().filter_map(|l| l.strip_prefix("  ")).filter(|l| l.starts_with("curl ")).collect();
    assert_eq!(commands.len(), 2, "two curl commands: {lines:?}");
    assert!(commands.iter().all(|c| c.contains(&url)), "both commands use the printed URL {url}");
    let run = |cmd: &str| {
        let out = Command::new("sh").args(["-c", cmd]).output().expect("sh must run");
        assert!(out.status.success(), "{cmd} must succeed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = run(commands[0]);
    assert!(first.to_ascii_lowercase().contains("set-cookie: sticky="), "the first command shows Set-Cookie: {first}");
    let name = first
        .lines()
        .find_map(|l| l.strip_prefix("I'm "))
        .expect("the first command shows the backend")
        .trim()
        .to_owned();
    assert!(name.starts_with("demo-"));
    for _ in 0..3 {
        let second = run(commands[1]);
        let answers: Vec<&str> = second.lines().collect();
        assert_eq!(
            answers,
            vec![format!("I'm {name}"); 3],
            "the second command sends the cookie back and stays on {name}"
        );
    }
    // clean up the cookie jar the printed command wrote
    if let Some(jar) = commands[0].split_whitespace().nth(3) {
        let _ = std::fs::remove_file(jar.trim_matches('\''));
    }
}

//! `sticky demo`: three whoami backends and the balancer in front of them on loopback, and two
//! commands to paste that show a session staying on its backend.

use std::{io::Write as _, net::SocketAddr};

use super::{AppError, Running, start};
use crate::{
    cli::{DemoArgs, RunArgs},
    config,
    cookie::Keys,
};

/// What `sticky demo` started.
#[derive(Debug)]
pub struct Demo {
    /// The balancer.
    pub balancer: Running,
    /// Address of the balancer.
    pub listen: SocketAddr,
    /// Names and addresses of the demo backends.
    pub backends: Vec<(String, SocketAddr)>,
    /// The admin token of the dashboard's drain buttons (with `--admin`), and its file (removed on drop).
    pub token: Option<(String, TokenFile)>,
}

/// A file removed when dropped.
#[derive(Debug)]
pub struct TokenFile(pub std::path::PathBuf);

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A random admin token in a new 0600 file of the temporary directory.
fn token_file() -> Result<(String, TokenFile), AppError> {
    use std::{fmt::Write as _, io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let token = rand::random::<[u8; 16]>().iter().fold(String::with_capacity(32), |mut t, b| {
        let _ = write!(t, "{b:02x}");
        t
    });
    let path = std::env::temp_dir().join(format!("sticky-demo-admin-{}.token", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(token.as_bytes()));
    written.map_err(|source| AppError::DemoToken { path: path.clone(), source })?;
    Ok((token, TokenFile(path)))
}

/// Names of the demo backends.
pub const DEMO_NAMES: [&str; 3] = ["demo-1", "demo-2", "demo-3"];

/// `sticky demo`: starts the demo, prints what to paste, and serves until `stop` completes.
///
/// # Errors
/// A listener cannot be bound (the balancer's port taken, say).
pub async fn demo(args: &DemoArgs, stop: impl Future<Output = ()>) -> Result<(), AppError> {
    let demo = start_demo(args.listen, args.workers, args.admin).await?;
    print(&demo);
    stop.await;
    Ok(())
}

/// Starts three whoami backends on loopback and a balancer in front of them on `listen`, with its
/// admin listener (the dashboard) on `admin` if given.
///
/// # Errors
/// A listener cannot be bound, or `workers` is out of range.
pub async fn start_demo(listen: SocketAddr, workers: usize, admin: Option<SocketAddr>) -> Result<Demo, AppError> {
    let mut backends = Vec::new();
    for name in DEMO_NAMES {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let l = tokio::net::TcpListener::bind(any).await.map_err(|source| AppError::Bind { addr: any, source })?;
        let addr = l.local_addr().map_err(|source| AppError::Bind { addr: any, source })?;
        tokio::spawn(crate::whoami::serve(l, name.to_owned()));
        backends.push((name.to_owned(), addr));
    }
    // the dashboard's buttons write over TCP, which needs a token: one for this demo
    let token = admin.map(|_| token_file()).transpose()?;
    let args = RunArgs {
        admin_token_file: token.as_ref().map(|(_, f)| f.0.clone()),
        listen: Some(listen),
        workers: Some(workers),
        admin,
        backends: backends.iter().map(|(n, a)| format!("{n}=http://{a}")).collect(),
        ..RunArgs::default()
    };
    let config = config::build(&args, None)?;
    // the demo runs on one machine with nothing to share the key with: a random key, without the warning
    let balancer = start(config, Some(Keys::random())).await?;
    let listen = balancer.http.as_ref().map_or(listen, |h| h.listen);
    Ok(Demo { balancer, listen, backends, token })
}

/// Prints the demo's URL and two commands that can be pasted into a shell as they are.
fn print(demo: &Demo) {
    let url = format!("http://{}/", demo.listen);
    let jar = std::env::temp_dir().join(format!("sticky-demo-{}.cookies", demo.listen.port()));
    let jar = shell_quote(&jar.to_string_lossy());
    let backends: Vec<String> = demo.backends.iter().map(|(n, a)| format!("{n} ({a})")).collect();
    let mut out = std::io::stdout().lock();
    // a closed stdout must not stop the demo: the lines are a courtesy
    let _ = writeln!(out, "sticky demo: the balancer at {url} spreads sessions over {}", backends.join(", "));
    let _ = writeln!(out);
    let _ = writeln!(out, "First visit: a backend is picked and the sticky cookie is set (see Set-Cookie):");
    let _ = writeln!(out, "  curl -si -c {jar} {url}");
    let _ = writeln!(out);
    let _ = writeln!(out, "Send the cookie back: the same backend answers every time:");
    let _ = writeln!(out, "  curl -s -b {jar} {url} {url} {url}");
    let _ = writeln!(out);
    if let Some(admin) = demo.balancer.admin {
        let _ =
            writeln!(out, "Watch it live: the dashboard at http://{admin}/ (sessions, rates, latency, drain buttons)");
        if let Some((token, _)) = &demo.token {
            let _ = writeln!(out, "  its drain buttons want this demo's admin token: {token}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "Serving until Ctrl-C.");
    let _ = out.flush();
}

/// Quotes `s` for a POSIX shell if it holds anything but safe characters.
fn shell_quote(s: &str) -> String {
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%=,".contains(&b)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn paths_are_quoted_only_when_they_must_be() {
        assert_eq!(shell_quote("/tmp/sticky-demo-8080.cookies"), "/tmp/sticky-demo-8080.cookies");
        assert_eq!(shell_quote("/tmp/my dir/x"), "'/tmp/my dir/x'");
        assert_eq!(shell_quote("/tmp/it's"), r"'/tmp/it'\''s'");
    }
}

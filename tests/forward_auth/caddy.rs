//! Debian's Caddy in front of the gateway with the shipped `config/caddy/Caddyfile`
//! (`forward_auth` with `copy_headers`), only its placeholders substituted and a global options
//! block added for the test (no admin endpoint, no automatic HTTPS, loopback only).

use crate::harness::{free_port, Upstream};
use crate::support::*;
use crate::walk::{app_gets_no_spoofed_identity_and_no_session_cookie, full_walk, sign_in_through};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CADDY: &str = "caddy";

/// A foreground `caddy run` with its home, data and config in a tempdir; killed on drop.
pub struct Caddy {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Caddy {
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("caddy.log")
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The shipped Caddyfile with the placeholders replaced: the app's site block serves both test
/// apps, the auth host its own block, plain HTTP on `port`.
pub fn caddyfile(dir: &Path, port: u16, upstream: &str, gateway: &str) -> String {
    let example = example("caddy/Caddyfile");
    for site in ["\nwiki.example.com {", "\nauth.example.com {"] {
        assert!(
            example.contains(site),
            "the example has no `{}` site",
            site.trim()
        );
    }
    let site = example
        .replace(
            "\nwiki.example.com {",
            &format!("\nhttp://{WIKI}:{port}, http://{ADMIN}:{port} {{"),
        )
        .replace(
            "\nauth.example.com {",
            &format!("\nhttp://{AUTH}:{port} {{"),
        )
        .replace("127.0.0.1:3000", upstream)
        .replace("127.0.0.1:9000", gateway);
    format!(
        "# Test-only global options.\n{{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n\tstorage file_system {}\n}}\n\n{site}",
        dir.join("data").display()
    )
}

async fn start_caddy(upstream: &Upstream, gw: &Gateway) -> Caddy {
    start_caddy_at(&upstream.addr.to_string(), gw).await
}

/// The shipped Caddyfile in front of `gw`, both apps proxied to `upstream` (an address).
pub async fn start_caddy_at(upstream: &str, gw: &Gateway) -> Caddy {
    let mut c = Caddy {
        dir: tempdir("portcullis-caddy-"),
        port: 0,
        child: None,
    };
    let dir = c.dir.path().to_path_buf();
    for sub in ["home", "data", "config"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let path = dir.join("Caddyfile");
    for _attempt in 0..3 {
        c.port = free_port();
        let file = caddyfile(&dir, c.port, upstream, &gw.addr().to_string());
        fs::write(&path, &file).unwrap();
        let log = fs::File::create(c.log_path()).unwrap();
        let child = Command::new(CADDY)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&path)
            .env("HOME", dir.join("home"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn caddy");
        c.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", c.port))
                .await
                .is_ok()
            {
                return c;
            }
            if let Some(Ok(Some(st))) = c.child.as_mut().map(|c| c.try_wait()) {
                let logs = c.logs();
                assert!(
                    logs.contains("address already in use"),
                    "caddy exited with {st}:\n{logs}\n--- Caddyfile ---\n{file}"
                );
                // The port was taken meanwhile: try another.
                c.child = None;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "caddy did not listen on {}:\n{}",
                c.port,
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("caddy could not bind a port:\n{}", c.logs());
}

#[tokio::test]
async fn caddy_example_config_signs_in_across_subdomains_and_passes_identity() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(Opts {
        upstream: upstream.addr.to_string(),
        ..Opts::default()
    })
    .await;
    let caddy = start_caddy(&upstream, &gw).await;
    let logs = || {
        format!(
            "--- caddy ---\n{}\n--- gateway ---\n{}",
            caddy.logs(),
            gw.logs()
        )
    };
    full_walk(caddy.port, &upstream, &gw, &logs).await;
}

#[tokio::test]
async fn caddy_dot_segments_cannot_borrow_a_bypass_path() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(Opts {
        upstream: upstream.addr.to_string(),
        ..Opts::default()
    })
    .await;
    let caddy = start_caddy(&upstream, &gw).await;
    // `/public/` needs no sign-in; `/public/../private/report` is `/private/report` to the app.
    let host = format!("{WIKI}:{}", caddy.port);
    for target in [
        "/public/../private/report",
        "/public/%2e%2e/private/report",
        "/public/./../private/report",
    ] {
        let (status, text) =
            raw_get(caddy.port, &host, target, &[("accept", "application/json")]).await;
        assert_eq!(
            upstream.hits(),
            0,
            "{target} reached the app without signing in: {text}\n{}",
            gw.logs()
        );
        assert_eq!(status, 401, "{target}: {text}");
    }
    // The real bypass path still passes.
    let (status, text) = raw_get(caddy.port, &host, "/public/info", &[]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn caddy_example_passes_no_spoofed_identity_spelling_and_no_session_cookie() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(Opts {
        upstream: upstream.addr.to_string(),
        ..Opts::default()
    })
    .await;
    let caddy = start_caddy(&upstream, &gw).await;
    let logs = || {
        format!(
            "--- caddy ---\n{}\n--- gateway ---\n{}",
            caddy.logs(),
            gw.logs()
        )
    };
    app_gets_no_spoofed_identity_and_no_session_cookie(caddy.port, &upstream, &logs).await;
}

/// Caddy, like nginx, routes an absolute-form request on the request line's host: the decision
/// must be that app's, never the one the `Host` header names.
#[tokio::test]
async fn caddy_absolute_form_request_gets_no_other_apps_decision() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(Opts {
        upstream: upstream.addr.to_string(),
        ..Opts::default()
    })
    .await;
    let caddy = start_caddy(&upstream, &gw).await;
    let p = caddy.port;
    let (wiki, admin) = (format!("{WIKI}:{p}"), format!("{ADMIN}:{p}"));
    let bob = format!(
        "{SESSION_COOKIE}={}",
        sign_in_through(p, "bob", BOB_PW).await
    );
    let before = upstream.hits();
    let json = ("accept", "application/json");
    for (target, cookie) in [
        (format!("http://{admin}/public/x"), ""),
        (format!("http://{admin}/"), ""),
        (format!("http://{admin}/dash"), bob.as_str()),
    ] {
        let (status, text) = raw_try(p, &wiki, &target, &[json, ("cookie", cookie)]).await;
        assert_eq!(
            upstream.hits(),
            before,
            "{target} with Host {wiki} reached the app: {text}\n{}",
            gw.logs()
        );
        assert_ne!(status, Some(200), "{target}: {text}");
    }
}

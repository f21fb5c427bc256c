//! Debian's nginx in front of the gateway with the shipped `config/nginx/portcullis.conf`
//! (`auth_request`, `auth_request_set`, the 401 -> sign-in redirect), only its placeholders
//! substituted.

use crate::harness::{free_port, Upstream};
use crate::support::*;
use crate::walk::full_walk;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NGINX: &str = "/usr/sbin/nginx";

/// A foreground nginx (no daemon, no master) with all its paths in a tempdir; killed on drop.
struct Nginx {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Nginx {
    fn error_log(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }

    fn logs(&self) -> String {
        fs::read_to_string(self.error_log()).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `server { ... }` block whose `server_name` is `name`, as written in `conf`.
fn server_block<'a>(conf: &'a str, name: &str) -> &'a str {
    let marker = format!("server_name {name};");
    let at = conf
        .find(&marker)
        .unwrap_or_else(|| panic!("no server block for {name} in the example"));
    let start = conf[..at]
        .rfind("server {")
        .unwrap_or_else(|| panic!("no `server {{` before {marker}"));
    // Match braces, ignoring comments (they may mention `{ }`).
    let mut depth = 0usize;
    let mut pos = start;
    for line in conf[start..].split_inclusive('\n') {
        let code = line.split('#').next().unwrap_or("");
        for ch in code.chars() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
        }
        pos += line.len();
        if depth == 0 {
            return &conf[start..pos];
        }
    }
    panic!("unbalanced server block for {name}");
}

/// The shipped example with the placeholders replaced: both test apps get the example's app
/// block (the admin one derived from the wiki one), the auth host its block, all on `port`.
pub fn site_config(port: u16, upstream: &str, gateway: &str) -> String {
    let example = example("nginx/portcullis.conf");
    let admin = server_block(&example, "wiki.example.com").replace(
        "server_name wiki.example.com;",
        "server_name admin.example.com;",
    );
    assert!(
        admin.contains("auth_request "),
        "the app block has no auth_request"
    );
    let conf = format!("{example}\n# Derived from the wiki block above.\n{admin}");
    assert_eq!(
        conf.matches("listen 80;").count(),
        3,
        "expected three server blocks listening on 80"
    );
    conf.replace("wiki.example.com", WIKI)
        .replace("admin.example.com", ADMIN)
        .replace("auth.example.com", AUTH)
        .replace("127.0.0.1:3000", upstream)
        .replace("127.0.0.1:9000", gateway)
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
}

/// The main config around the site config: foreground, single process, everything in `dir`.
fn main_config(dir: &Path, site: &Path) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    include {site};
}}
"#,
        site = site.display()
    )
}

async fn start_nginx(upstream: &Upstream, gw: &Gateway) -> Nginx {
    let mut n = Nginx {
        dir: tempdir("portcullis-nginx-"),
        port: 0,
        child: None,
    };
    let dir = n.dir.path().to_path_buf();
    fs::create_dir_all(dir.join("tmp")).unwrap();
    let site_path = dir.join("portcullis.conf");
    let conf_path = dir.join("nginx.conf");
    fs::write(&conf_path, main_config(&dir, &site_path)).unwrap();
    for _attempt in 0..3 {
        n.port = free_port();
        let site = site_config(n.port, &upstream.addr.to_string(), &gw.addr().to_string());
        fs::write(&site_path, &site).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(n.error_log())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        n.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", n.port))
                .await
                .is_ok()
            {
                return n;
            }
            if let Some(Ok(Some(st))) = n.child.as_mut().map(|c| c.try_wait()) {
                let logs = n.logs();
                assert!(
                    logs.contains("Address already in use"),
                    "nginx exited with {st}:\n{logs}\n--- site config ---\n{site}"
                );
                // The port was taken meanwhile: try another.
                n.child = None;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {}:\n{}",
                n.port,
                n.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("nginx could not bind a port:\n{}", n.logs());
}

#[tokio::test]
async fn nginx_example_config_signs_in_across_subdomains_and_passes_identity() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(Opts {
        upstream: upstream.addr.to_string(),
        ..Opts::default()
    })
    .await;
    let nginx = start_nginx(&upstream, &gw).await;
    let logs = || {
        format!(
            "--- nginx ---\n{}\n--- gateway ---\n{}",
            nginx.logs(),
            gw.logs()
        )
    };
    full_walk(nginx.port, &upstream, &gw, &logs).await;
}

#[tokio::test]
async fn nginx_request_with_an_odd_host_cannot_claim_a_bypass_path() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(Opts {
        upstream: upstream.addr.to_string(),
        ..Opts::default()
    })
    .await;
    let nginx = start_nginx(&upstream, &gw).await;
    // nginx accepts this Host and, matching no server_name, serves it with the first (the
    // protected app's) server block; the X-Original-URL it builds from it is not a valid URL.
    // The client's own X-Original-URI / X-Forwarded-Host, passed along by nginx, must not then
    // decide what is being asked for.
    let c = Client::new(([127, 0, 0, 1], nginx.port).into());
    let r = c
        .get(
            &format!("http://127.0.0.1:{}/private/report", nginx.port),
            ACCEPT_HTML,
            &[
                ("host", "wiki.example.test^"),
                ("x-original-uri", "/public/free"),
                ("x-forwarded-host", WIKI),
            ],
        )
        .await;
    assert_eq!(
        upstream.hits(),
        0,
        "reached the app without signing in: {}\n{}",
        r.describe(),
        gw.logs()
    );
    assert!(
        matches!(r.status, 401 | 403 | 302),
        "{}\n{}",
        r.describe(),
        nginx.logs()
    );
}

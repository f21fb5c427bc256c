//! The shipped front-proxy examples, run for real: Debian's nginx with
//! `config/nginx/portcullis.conf` and Caddy with `config/caddy/Caddyfile`, only their
//! placeholders substituted (host names, addresses, the listen port). Self-contained (no test
//! harness), so any test binary can include it with `#[path]`: the browser tests drive them
//! with Chromium, the bench test signs in through them.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which front proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Caddy,
}

/// What to put in the example: the protected apps' hosts (each gets the example's app block),
/// the auth host, the upstream behind the apps, and the gateway.
#[derive(Clone, Debug)]
pub struct Site {
    pub apps: Vec<String>,
    pub auth: String,
    pub upstream: String,
    pub gateway: String,
}

/// A running front proxy in the foreground, everything in a tempdir; killed on drop.
pub struct Front {
    pub kind: Kind,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Front {
    pub async fn start(kind: Kind, site: &Site) -> Front {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-front-")
            .tempdir()
            .unwrap();
        let mut f = Front {
            kind,
            port: 0,
            dir,
            child: None,
        };
        for _attempt in 0..3 {
            f.port = free_port();
            let (child, config) = match kind {
                Kind::Nginx => f.spawn_nginx(site),
                Kind::Caddy => f.spawn_caddy(site),
            };
            f.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if tokio::net::TcpStream::connect(("127.0.0.1", f.port))
                    .await
                    .is_ok()
                {
                    return f;
                }
                if let Some(Ok(Some(st))) = f.child.as_mut().map(|c| c.try_wait()) {
                    let logs = f.logs();
                    assert!(
                        logs.to_ascii_lowercase().contains("address already in use"),
                        "{kind:?} exited with {st}:\n{logs}\n--- config ---\n{config}"
                    );
                    f.child = None;
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{kind:?} did not listen on {}:\n{}",
                    f.port,
                    f.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("{kind:?} could not bind a port:\n{}", f.logs());
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("front.log")
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn_nginx(&self, site: &Site) -> (Child, String) {
        let dir = self.dir.path();
        fs::create_dir_all(dir.join("tmp")).unwrap();
        let site_path = dir.join("site.conf");
        let conf = nginx_site(self.port, site);
        fs::write(&site_path, &conf).unwrap();
        let main = dir.join("nginx.conf");
        fs::write(&main, nginx_main(dir, &site_path)).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&main)
            .arg("-e")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        (child, conf)
    }

    fn spawn_caddy(&self, site: &Site) -> (Child, String) {
        let dir = self.dir.path();
        for sub in ["home", "data", "config"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let path = dir.join("Caddyfile");
        let file = caddyfile(dir, self.port, site);
        fs::write(&path, &file).unwrap();
        let log = fs::File::create(self.log_path()).unwrap();
        let child = Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&path)
            .env("HOME", dir.join("home"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn caddy");
        (child, file)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A shipped example file from `config/`.
pub fn shipped(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(rel);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
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

/// The shipped nginx example: the app block once per app host, the auth block, on `port`.
pub fn nginx_site(port: u16, site: &Site) -> String {
    let example = shipped("nginx/portcullis.conf");
    let app_block = server_block(&example, "wiki.example.com");
    let mut conf = example.replace("wiki.example.com", &site.apps[0]);
    for host in &site.apps[1..] {
        conf.push_str(&format!("\n# The app block again, for {host}.\n"));
        conf.push_str(&app_block.replace("wiki.example.com", host));
    }
    conf.replace("auth.example.com", &site.auth)
        .replace("127.0.0.1:3000", &site.upstream)
        .replace("127.0.0.1:9000", &site.gateway)
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
}

fn nginx_main(dir: &Path, site: &Path) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/front.log info;
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

/// The shipped Caddyfile: the app site serves every app host, the auth site the auth host,
/// plain HTTP on `port`, with test-only global options (no admin API, no automatic HTTPS).
pub fn caddyfile(dir: &Path, port: u16, site: &Site) -> String {
    let example = shipped("caddy/Caddyfile");
    for name in ["\nwiki.example.com {", "\nauth.example.com {"] {
        assert!(
            example.contains(name),
            "the example has no `{}` site",
            name.trim()
        );
    }
    let apps = site
        .apps
        .iter()
        .map(|h| format!("http://{h}:{port}"))
        .collect::<Vec<_>>()
        .join(", ");
    let body = example
        .replace("\nwiki.example.com {", &format!("\n{apps} {{"))
        .replace(
            "\nauth.example.com {",
            &format!("\nhttp://{}:{port} {{", site.auth),
        )
        .replace("127.0.0.1:3000", &site.upstream)
        .replace("127.0.0.1:9000", &site.gateway);
    format!(
        "# Test-only global options.\n{{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n\tstorage file_system {}\n}}\n\n{body}",
        dir.join("data").display()
    )
}

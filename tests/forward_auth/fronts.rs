//! The shipped front-proxy examples, run for real: Debian's nginx with
//! `config/nginx/portcullis.conf` and Caddy with `config/caddy/Caddyfile`, only their
//! placeholders substituted (host names, addresses, the listen port). Any test binary that has
//! the shared harness (`crate::harness`) can include it with `#[path]`: the browser tests drive
//! them with Chromium, the bench test signs in through them, the forward-auth tests attack them.
//! Also runs nginx with any other config ([`Front::nginx`]), e.g. as a static upstream.
//!
//! nginx is handed its listener (bound here to port 0) the way its binary upgrade does it
//! (`NGINX="3;"`). Caddy 2.6 cannot take a handed-over socket (`fd/N` addresses came later), so
//! it binds a [`reserved_port`] itself: a port held for the test run with `SO_REUSEADDR`, which
//! Caddy (Go) sets too, so nobody else is given it.
#![allow(dead_code)]

use crate::harness::{command_with_listeners, reserved_port, Handover, Listener};
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
    /// Apps with an upstream of their own (nginx only: the shipped Caddyfile has one site for
    /// every app).
    own_upstreams: Vec<(String, String)>,
    /// Lines added to nginx's `http { }` block.
    nginx_http: String,
    /// Lines added to the shipped Caddyfile's `forward_auth` block.
    caddy_forward_auth: String,
}

impl Site {
    pub fn new(apps: &[&str], auth: &str, upstream: &str, gateway: &str) -> Site {
        Site {
            apps: apps.iter().map(|h| h.to_string()).collect(),
            auth: auth.into(),
            upstream: upstream.into(),
            gateway: gateway.into(),
            own_upstreams: Vec::new(),
            nginx_http: String::new(),
            caddy_forward_auth: String::new(),
        }
    }

    /// `lines` added to the shipped Caddyfile's `forward_auth` block (e.g. `trusted_proxies`,
    /// as a Caddy behind a load balancer has; Caddy 2.6 has no global `trusted_proxies`).
    pub fn caddy_forward_auth(mut self, lines: &str) -> Site {
        self.caddy_forward_auth = lines.into();
        self
    }

    /// `host` proxied to `upstream` instead of the common one (nginx only).
    pub fn upstream_for(mut self, host: &str, upstream: &str) -> Site {
        self.own_upstreams.push((host.into(), upstream.into()));
        self
    }

    /// `lines` added to nginx's `http { }` block.
    pub fn nginx_http(mut self, lines: &str) -> Site {
        self.nginx_http = lines.into();
        self
    }

    fn upstream_of(&self, host: &str) -> &str {
        self.own_upstreams
            .iter()
            .find(|(h, _)| h == host)
            .map_or(&self.upstream, |(_, u)| u)
    }
}

/// The nginx binary (Debian's, with `auth_request`).
pub const NGINX: &str = "/usr/sbin/nginx";

/// A running front proxy in the foreground, everything in a tempdir; killed on drop.
pub struct Front {
    pub kind: Kind,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Front {
    /// The shipped example of `kind` with `site` put in, on a free port.
    pub async fn start(kind: Kind, site: &Site) -> Front {
        if kind == Kind::Caddy {
            assert!(
                site.own_upstreams.is_empty() && site.nginx_http.is_empty(),
                "per-app upstreams and http lines are for nginx only"
            );
        }
        Front::run(kind, &site.nginx_http, |dir, port| match kind {
            Kind::Nginx => nginx_site(port, site),
            Kind::Caddy => caddyfile(dir, port, site),
        })
        .await
    }

    /// nginx with the `server` blocks `site(port)` (any config, not only the example) on a free
    /// port, `http_extra` added to the `http { }` block.
    pub async fn nginx(site: impl Fn(u16) -> String, http_extra: &str) -> Front {
        Front::run(Kind::Nginx, http_extra, |_, port| site(port)).await
    }

    /// Runs `kind` with `config(dir, port)` (nginx: the `server` blocks, included in the
    /// `http { }` block after `http_extra`; Caddy: the whole Caddyfile) and waits until it
    /// answers on `port`.
    async fn run(kind: Kind, http_extra: &str, config: impl Fn(&Path, u16) -> String) -> Front {
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
        match kind {
            Kind::Nginx => {
                let listener = Listener::bind();
                f.port = listener.port();
                let config = config(f.dir.path(), f.port);
                f.child = Some(f.spawn_nginx(&config, http_extra, &listener));
                // One request: it waits in the listener's backlog until nginx accepts it.
                let answer = tokio::select! {
                    r = http_head(f.port) => r,
                    st = exited(f.child.as_mut().unwrap()) => Err(format!("exited with {st}")),
                };
                if let Err(e) = answer {
                    panic!(
                        "nginx did not answer: {e}\n{}\n--- config ---\n{config}",
                        f.logs()
                    );
                }
            }
            Kind::Caddy => {
                f.port = reserved_port();
                let config = config(f.dir.path(), f.port);
                f.child = Some(f.spawn_caddy(&config));
                let deadline = Instant::now() + Duration::from_secs(20);
                // Only this Caddy can listen on the reserved port: wait until it does.
                while tokio::net::TcpStream::connect(("127.0.0.1", f.port))
                    .await
                    .is_err()
                {
                    if let Some(Ok(Some(st))) = f.child.as_mut().map(|c| c.try_wait()) {
                        panic!(
                            "Caddy exited with {st}:\n{}\n--- config ---\n{config}",
                            f.logs()
                        );
                    }
                    assert!(
                        Instant::now() < deadline,
                        "Caddy did not listen on {}:\n{}",
                        f.port,
                        f.logs()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        f
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("front.log")
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn_nginx(&self, site: &str, http_extra: &str, listener: &Listener) -> Child {
        let dir = self.dir.path();
        fs::create_dir_all(dir.join("tmp")).unwrap();
        let site_path = dir.join("site.conf");
        fs::write(&site_path, site).unwrap();
        let main = dir.join("nginx.conf");
        fs::write(&main, nginx_main(dir, &site_path, http_extra)).unwrap();
        command_with_listeners(NGINX, std::slice::from_ref(listener), Handover::Nginx)
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
            .expect("spawn nginx")
    }

    fn spawn_caddy(&self, file: &str) -> Child {
        let dir = self.dir.path();
        for sub in ["home", "data", "config"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let path = dir.join("Caddyfile");
        fs::write(&path, file).unwrap();
        let log = fs::File::create(self.log_path()).unwrap();
        Command::new("caddy")
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
            .expect("spawn caddy")
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if self.kind == Kind::Nginx {
            // SIGTERM: nginx's master stops its worker (SIGKILL would leave the worker running).
            // SAFETY: kill(2) on our own child's pid, which it still is (not yet waited for).
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Any HTTP answer to `HEAD /` on `port` (within 20 s).
async fn http_head(port: u16) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let talk = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"HEAD / HTTP/1.1\r\nHost: ready.invalid\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 5];
        s.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    match tokio::time::timeout(Duration::from_secs(20), talk).await {
        Ok(Ok(head)) if &head == b"HTTP/" => Ok(()),
        Ok(Ok(head)) => Err(format!("not HTTP: {head:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 20 s".into()),
    }
}

/// Resolves when `child` has exited, with its status.
async fn exited(child: &mut Child) -> std::process::ExitStatus {
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// The shipped nginx example: the app block once per app host (each proxied to its upstream),
/// the auth block, all on `port`.
pub fn nginx_site(port: u16, site: &Site) -> String {
    let example = shipped("nginx/portcullis.conf");
    let app_block = server_block(&example, "wiki.example.com");
    assert!(
        app_block.contains("auth_request "),
        "the app block has no auth_request"
    );
    let app = |block: &str, host: &str| {
        block
            .replace("wiki.example.com", host)
            .replace("127.0.0.1:3000", site.upstream_of(host))
    };
    let mut conf = app(&example, &site.apps[0]);
    for host in &site.apps[1..] {
        conf.push_str(&format!("\n# The app block again, for {host}.\n"));
        conf.push_str(&app(app_block, host));
    }
    assert_eq!(
        conf.matches("listen 80;").count(),
        site.apps.len() + 1,
        "expected a server block listening on 80 per app and one for the auth host"
    );
    conf.replace("auth.example.com", &site.auth)
        .replace("127.0.0.1:9000", &site.gateway)
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
}

/// The main config around a site config: foreground, everything in `dir`. A master process
/// with one worker: nginx 1.22 crashes (SIGSEGV) on inherited sockets with
/// `master_process off`.
fn nginx_main(dir: &Path, site: &Path, http_extra: &str) -> String {
    let d = dir.display();
    // As root, nginx would run its worker as `nobody`, which cannot enter the (0700) tempdir:
    // keep it as the test's user, like a single process.
    // SAFETY: geteuid(2) has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    format!(
        r#"daemon off;
master_process on;
{user}
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
    {http_extra}
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
    let uri = "\t\t\turi /.portcullis/auth/caddy\n";
    assert!(
        body.contains(uri),
        "the example's forward_auth has no `uri` line"
    );
    let body = body.replace(uri, &format!("{uri}{}\n", site.caddy_forward_auth));
    format!(
        "# Test-only global options.\n{{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n\tstorage file_system {}\n}}\n\n{body}",
        dir.join("data").display()
    )
}

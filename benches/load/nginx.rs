//! nginx as the outside reference. Three nginx processes, each with its own config, pid file and
//! temp paths under the bench's directory:
//!
//! - the front nginx (one worker, like the gateway's one thread): `return 200`, a keep-alive
//!   reverse proxy, and `auth_request` in front of the upstream asking either the separate auth
//!   nginx or Portcullis' forward-auth endpoint, both the same way (below);
//! - the auth nginx: a second nginx process, one worker, its own port, answering 204 to
//!   everything: the trivial forward-auth server Portcullis competes with;
//! - the 2-worker nginx: the keep-alive reverse proxy alone, for the 2-thread rows.

use crate::procs::{BoxError, Proc};
use std::net::SocketAddr;
use std::path::Path;

/// The front nginx's listeners.
pub(crate) struct Ports {
    pub(crate) ret200: SocketAddr,
    pub(crate) proxy: SocketAddr,
    /// `auth_request` to the separate auth nginx.
    pub(crate) auth_separate: SocketAddr,
    /// `auth_request` to Portcullis.
    pub(crate) auth_portcullis: SocketAddr,
}

/// The forward-auth endpoint nginx `auth_request` asks (issue 5).
pub(crate) const FORWARD_AUTH_PATH: &str = "/.portcullis/auth/nginx";

/// Keep-alive connections each nginx keeps to an upstream (the app, an auth server).
const KEEPALIVE: u32 = 256;

/// The start of every config: `workers` worker processes, no access log, temp paths and the
/// pid file under `dir/name`, client keep-alive that never ends during a run.
fn head(dir: &Path, name: &str, workers: usize) -> String {
    let d = dir.join(name);
    let d = d.display();
    // Running as root, nginx would switch its worker to `nobody`, which cannot use our files.
    let user = if is_root() { "user root;" } else { "" };
    format!(
        r#"{user}
worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
"#
    )
}

/// An `upstream` block with a keep-alive pool, the shape config/nginx/portcullis.conf uses.
fn upstream(name: &str, addr: SocketAddr) -> String {
    format!(
        "    upstream {name} {{ server {addr}; keepalive {KEEPALIVE}; keepalive_requests 10000000; }}\n"
    )
}

/// The keep-alive reverse proxy location to the app.
const PROXY_LOCATION: &str = r#"
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }"#;

/// A server that asks `auth_upstream` before proxying to the app. The auth subrequest sends
/// what config/nginx/portcullis.conf sends (X-Original-URL, X-Forwarded-Host, the method,
/// X-Forwarded-For, client identity headers blanked, no body) over a keep-alive upstream
/// (`proxy_http_version 1.1`, `Connection ""`). The same for both auth servers, so the rows
/// differ only in who answers.
fn auth_server(listen: SocketAddr, auth_upstream: &str) -> String {
    format!(
        r#"
    server {{
        listen {listen};
        location / {{
            auth_request /.portcullis-auth;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location = /.portcullis-auth {{
            internal;
            proxy_pass http://{auth_upstream}{FORWARD_AUTH_PATH};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URL $scheme://$host:$server_port$request_uri;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Remote-User "";
            proxy_set_header Remote-Name "";
            proxy_set_header Remote-Email "";
            proxy_set_header Remote-Groups "";
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"#
    )
}

/// The front nginx: one worker; `return 200`, the reverse proxy, and the two auth_request rows.
pub(crate) fn front_config(
    dir: &Path,
    p: &Ports,
    app: SocketAddr,
    auth_nginx: SocketAddr,
    gateway: SocketAddr,
) -> String {
    let mut c = head(dir, "nginx-front", 1);
    c.push_str(&upstream("app", app));
    c.push_str(&upstream("authnginx", auth_nginx));
    c.push_str(&upstream("portcullis", gateway));
    c.push_str(&format!(
        r#"    server {{
        listen {ret200};
        location / {{ return 200 "ok"; }}
    }}
    server {{
        listen {proxy};{PROXY_LOCATION}
    }}
"#,
        ret200 = p.ret200,
        proxy = p.proxy,
    ));
    c.push_str(&auth_server(p.auth_separate, "authnginx"));
    c.push_str(&auth_server(p.auth_portcullis, "portcullis"));
    c.push_str("}\n");
    c
}

/// The separate trivial auth server: one worker, 204 to every request, keep-alive.
pub(crate) fn auth_config(dir: &Path, listen: SocketAddr) -> String {
    let mut c = head(dir, "nginx-auth", 1);
    c.push_str(&format!(
        "    server {{\n        listen {listen};\n        location / {{ return 204; }}\n    }}\n}}\n"
    ));
    c
}

/// The 2-thread rows' nginx: `workers` workers, the keep-alive reverse proxy alone.
pub(crate) fn proxy_config(
    dir: &Path,
    workers: usize,
    listen: SocketAddr,
    app: SocketAddr,
) -> String {
    let mut c = head(dir, &format!("nginx-proxy{workers}"), workers);
    c.push_str(&upstream("app", app));
    c.push_str(&format!(
        "    server {{\n        listen {listen};{PROXY_LOCATION}\n    }}\n}}\n"
    ));
    c
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

/// The nginx binary, when installed.
pub(crate) fn binary() -> Option<&'static Path> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
}

/// Starts an nginx named `name` with the config, pinned to `cpus`; `None` when nginx is not
/// installed. Its files are `dir/name.conf` and `dir/name/`.
pub(crate) fn start(
    dir: &Path,
    name: &str,
    cpus: &str,
    conf: &str,
) -> Result<Option<Proc>, BoxError> {
    let Some(bin) = binary() else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir.join(name))?;
    let file = dir.join(format!("{name}.conf"));
    std::fs::write(&file, conf)?;
    let args = vec![
        "-p".to_string(),
        dir.join(name).display().to_string(),
        "-c".into(),
        file.display().to_string(),
    ];
    Ok(Some(Proc::spawn(
        name,
        cpus,
        bin,
        &args,
        &[],
        &dir.join(format!("{name}.log")),
    )?))
}

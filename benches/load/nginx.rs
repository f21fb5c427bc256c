//! nginx as the outside reference, one worker like the gateway's one thread: `return 200`,
//! a keep-alive reverse proxy, and `auth_request` in front of the upstream, asking either a
//! trivial nginx location or Portcullis' forward-auth endpoint.

use crate::procs::{BoxError, Proc};
use std::net::SocketAddr;
use std::path::Path;

/// The listeners of the one nginx the bench starts.
pub(crate) struct Ports {
    pub ret200: SocketAddr,
    pub(crate) proxy: SocketAddr,
    pub(crate) auth_trivial: SocketAddr,
    pub(crate) auth_portcullis: SocketAddr,
}

/// The forward-auth endpoint nginx `auth_request` asks (issue 5).
pub(crate) const FORWARD_AUTH_PATH: &str = "/.portcullis/auth/nginx";

pub(crate) fn config(
    dir: &Path,
    p: &Ports,
    upstream: SocketAddr,
    gateway: SocketAddr,
    host: &str,
) -> String {
    let d = dir.display();
    // Running as root, nginx would switch its worker to `nobody`, which cannot use our files.
    let user = if is_root() { "user root;" } else { "" };
    let auth = |target: &str| {
        format!(
            r#"
        location / {{
            auth_request /_auth;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location = /_auth {{
            internal;
            proxy_pass {target};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Host {host};
            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Uri $request_uri;
        }}"#
        )
    };
    format!(
        r#"{user}
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/nginx-body;
    proxy_temp_path {d}/nginx-proxy;
    fastcgi_temp_path {d}/nginx-fastcgi;
    uwsgi_temp_path {d}/nginx-uwsgi;
    scgi_temp_path {d}/nginx-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    upstream app {{ server {upstream}; keepalive 256; keepalive_requests 10000000; }}
    upstream gw {{ server {gateway}; keepalive 256; keepalive_requests 10000000; }}
    server {{
        listen {ret200};
        location / {{ return 200 "ok"; }}
        location = /trivial-auth {{ return 204; }}
    }}
    server {{
        listen {proxy};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen {auth_trivial};{trivial}
    }}
    server {{
        listen {auth_portcullis};{portcullis}
    }}
}}
"#,
        ret200 = p.ret200,
        proxy = p.proxy,
        auth_trivial = p.auth_trivial,
        auth_portcullis = p.auth_portcullis,
        trivial = auth(&format!("http://{}/trivial-auth", p.ret200)),
        portcullis = auth(&format!("http://gw{FORWARD_AUTH_PATH}")),
    )
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

/// Starts nginx with the config, pinned to `cpus`; `None` when nginx is not installed.
pub(crate) fn start(dir: &Path, cpus: &str, conf: &str) -> Result<Option<Proc>, BoxError> {
    let Some(bin) = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        return Ok(None);
    };
    let file = dir.join("nginx.conf");
    std::fs::write(&file, conf)?;
    let args = vec![
        "-p".to_string(),
        dir.display().to_string(),
        "-c".into(),
        file.display().to_string(),
    ];
    Ok(Some(Proc::spawn(
        "nginx",
        cpus,
        bin,
        &args,
        &[],
        &dir.join("nginx.log"),
    )?))
}

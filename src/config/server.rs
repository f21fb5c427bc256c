//! Validation of `[server]`: listeners, certificates, trusted proxies, the auth host; and the
//! public origins of the auth host and every app, which every link the gateway builds uses.

use super::error::Problem;
use super::raw::RawServer;
use super::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

type Checked<T> = Result<T, Problem>;

pub(super) fn server(raw: &RawServer, listen: Vec<SocketAddr>) -> Checked<ServerConfig> {
    let tls_listen = tls_listen(raw)?;
    let certificates = raw
        .certificates
        .iter()
        .enumerate()
        .map(|(i, c)| certificate(i, &c.cert, &c.key))
        .collect::<Checked<Vec<_>>>()?;
    if !tls_listen.is_empty() && certificates.is_empty() {
        return Err(Problem::new(
            "server.certificates",
            "tls_listen needs at least one [[server.certificates]] entry (try `portcullis certs dev`)",
        ));
    }
    if raw.redirect_http && tls_listen.is_empty() {
        return Err(Problem::new(
            "server.redirect_http",
            "needs a tls_listen address to redirect to",
        ));
    }
    let trusted_proxies = trusted_proxies(raw)?;
    let auth_url = auth_url(raw)?;
    let upstream_ca_file = upstream_ca_file(raw)?;
    Ok(ServerConfig {
        listen,
        threads: raw.threads,
        hsts: hsts(raw, &tls_listen)?,
        tls_listen,
        certificates,
        trusted_proxies,
        auth_host: auth_url.as_ref().map(|a| a.host().to_string()),
        auth_url,
        redirect_http: raw.redirect_http,
        upstream_ca_file,
        drain_timeout: super::ops::drain_timeout(raw.drain_timeout.as_deref())?,
        clients: clients(raw)?,
    })
}

/// The bounds `max_header_bytes` must stay within: a browser's head with its cookies needs a
/// few KiB; Pingora reads at most 1 MiB.
const HEADER_BYTES: std::ops::RangeInclusive<usize> = 1024..=1_048_575;

/// `header_timeout`, `body_timeout`, `max_header_bytes`, `max_connections_per_address`.
fn clients(raw: &RawServer) -> Checked<ClientLimits> {
    let defaults = ClientLimits::default();
    let timeout = |key: &str, text: &Option<String>, default| match text {
        None => Ok(default),
        Some(t) => parse_duration(t).map_err(|m| Problem::new(format!("server.{key}"), m)),
    };
    let max_header_bytes = raw.max_header_bytes.unwrap_or(defaults.max_header_bytes);
    if !HEADER_BYTES.contains(&max_header_bytes) {
        return Err(Problem::new(
            "server.max_header_bytes",
            format!(
                "{max_header_bytes} is outside {}..={} bytes",
                HEADER_BYTES.start(),
                HEADER_BYTES.end()
            ),
        ));
    }
    Ok(ClientLimits {
        header_timeout: timeout(
            "header_timeout",
            &raw.header_timeout,
            defaults.header_timeout,
        )?,
        body_timeout: timeout("body_timeout", &raw.body_timeout, defaults.body_timeout)?,
        max_header_bytes,
        max_connections_per_address: raw
            .max_connections_per_address
            .unwrap_or(defaults.max_connections_per_address),
    })
}

fn tls_listen(raw: &RawServer) -> Checked<Vec<SocketAddr>> {
    raw.tls_listen
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.parse::<SocketAddr>().map_err(|_| {
                Problem::new(
                    format!("server.tls_listen[{i}]"),
                    format!("`{l}` is not an address like \"0.0.0.0:443\""),
                )
            })
        })
        .collect()
}

/// `trusted_proxies`, loopback alone by default.
fn trusted_proxies(raw: &RawServer) -> Checked<Vec<ipnet::IpNet>> {
    let Some(list) = &raw.trusted_proxies else {
        return ["127.0.0.0/8", "::1/128"]
            .iter()
            .map(|c| {
                c.parse()
                    .map_err(|_| Problem::new("server.trusted_proxies", "bad default"))
            })
            .collect();
    };
    let danger = raw.danger_trust_any_proxy.unwrap_or(false);
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            let key = format!("server.trusted_proxies[{i}]");
            let net = c
                .parse::<ipnet::IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    Problem::new(
                        &key,
                        format!("`{c}` is not an address or CIDR like \"10.0.0.0/8\""),
                    )
                })?;
            // # Security
            // A trusted proxy's X-Forwarded-For is believed: trusting the whole internet lets
            // every client choose its own address for limits, bans, logs and policies.
            if too_wide(&net) && !danger {
                return Err(Problem::new(
                    key,
                    format!("`{c}` trusts forwarding headers from a large part of the internet (a prefix shorter than /8), so any client could claim any address; list your proxies, or set danger_trust_any_proxy = true next to it to allow this"),
                ));
            }
            Ok(net)
        })
        .collect()
}

/// Whether a trusted-proxy network is wider than /8: `0.0.0.0/0`, `::/0`, their halves, and
/// the IPv4-mapped block of IPv6 (`::ffff:0:0/96`) with a short IPv4 prefix.
fn too_wide(net: &ipnet::IpNet) -> bool {
    const WIDEST: u8 = 8;
    match net {
        ipnet::IpNet::V4(n) => n.prefix_len() < WIDEST,
        ipnet::IpNet::V6(n) => {
            let mapped_start = std::net::Ipv4Addr::UNSPECIFIED.to_ipv6_mapped();
            n.prefix_len() < WIDEST
                || (n.network().to_ipv4_mapped().is_some() && n.prefix_len() < 96 + WIDEST)
                || (n.prefix_len() <= 96 && n.contains(&mapped_start))
        }
    }
}

/// `auth_url`, refusing the old `auth_host` and plain HTTP under `redirect_http`.
fn auth_url(raw: &RawServer) -> Checked<Option<PublicOrigin>> {
    if let Some(h) = &raw.auth_host {
        // The old key took scheme and port from each request; there is no way to read it
        // that keeps links independent of the request, so it is refused with the fix.
        return Err(Problem::new(
            "server.auth_host",
            format!(
                "is replaced by `auth_url`, the address users reach the auth host at: write \
                 auth_url = \"https://{h}\" (with `:port` when it is not 443, or http://)"
            ),
        ));
    }
    let auth_url = raw
        .auth_url
        .as_deref()
        .map(|u| public_url("server.auth_url", u))
        .transpose()?;
    if let Some(a) = auth_url
        .as_ref()
        .filter(|a| raw.redirect_http && a.scheme() != Scheme::Https)
    {
        return Err(Problem::new(
            "server.auth_url",
            format!(
                "`{a}` is plain HTTP, but redirect_http sends every plain-HTTP request to HTTPS"
            ),
        ));
    }
    Ok(auth_url)
}

/// `upstream_ca_file`, read now: it must hold at least one PEM certificate.
fn upstream_ca_file(raw: &RawServer) -> Checked<Option<PathBuf>> {
    let Some(p) = &raw.upstream_ca_file else {
        return Ok(None);
    };
    let path = PathBuf::from(p);
    let n = CertificateDer::pem_file_iter(&path)
        .map_err(|e| {
            Problem::new(
                "server.upstream_ca_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?
        .filter(Result::is_ok)
        .count();
    if n == 0 {
        return Err(Problem::new(
            "server.upstream_ca_file",
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(Some(path))
}

/// `hsts`, parsed into the header value here, so a value that cannot be a header refuses
/// start instead of the header silently never being sent.
fn hsts(raw: &RawServer, tls_listen: &[SocketAddr]) -> Checked<Option<http::HeaderValue>> {
    let Some(h) = &raw.hsts else {
        return Ok(None);
    };
    let value = http::HeaderValue::from_str(h)
        .ok()
        .filter(|_| !h.trim().is_empty())
        .ok_or_else(|| {
            Problem::new(
                "server.hsts",
                format!("`{h}` is not a Strict-Transport-Security value like \"max-age=31536000\""),
            )
        })?;
    if tls_listen.is_empty() {
        return Err(Problem::new(
            "server.hsts",
            "is only sent on HTTPS and needs a tls_listen address",
        ));
    }
    Ok(Some(value))
}

/// Reads a certificate chain and its key now, so a missing or unreadable file refuses start
/// with its path named instead of failing the first handshake.
fn certificate(i: usize, cert: &str, key: &str) -> Checked<Certificate> {
    let cert_path = PathBuf::from(cert);
    let key_path = PathBuf::from(key);
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| {
            Problem::new(
                format!("server.certificates[{i}].cert"),
                format!("cannot read {}: {e}", cert_path.display()),
            )
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Problem::new(
                format!("server.certificates[{i}].cert"),
                format!("{}: not PEM certificates: {e}", cert_path.display()),
            )
        })?;
    if chain.is_empty() {
        return Err(Problem::new(
            format!("server.certificates[{i}].cert"),
            format!("{} holds no certificate", cert_path.display()),
        ));
    }
    PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        Problem::new(
            format!("server.certificates[{i}].key"),
            format!("cannot read a private key from {}: {e}", key_path.display()),
        )
    })?;
    let names = dns_names(&chain[0]);
    Ok(Certificate {
        cert_path,
        key_path,
        chain,
        names,
    })
}

/// The DNS subject alternative names of a certificate.
fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok(parsed) = webpki::EndEntityCert::try_from(cert) else {
        return Vec::new();
    };
    parsed
        .valid_dns_names()
        .map(|n| n.to_ascii_lowercase())
        .collect()
}

/// `[server] auth_url`: `scheme://host[:port]`, nothing else (like Authelia's `authelia_url`).
fn public_url(key: &str, text: &str) -> Checked<PublicOrigin> {
    let bad = |why: &str| {
        Problem::new(
            key,
            format!("`{text}` {why}; write it like \"https://auth.example.com\" or \"http://auth.example.com:8080\""),
        )
    };
    let url = url::Url::parse(text).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(bad("is not an http:// or https:// URL")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("has a user name or password"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "has a path, query or fragment (the sign-in pages live at the root)",
        ));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        _ => return Err(bad("needs a host name or IPv4 address")),
    };
    let port = url.port_or_known_default().unwrap_or(scheme.default_port());
    Ok(PublicOrigin::new(scheme, &host, port))
}

/// Fills in each app's public origins: its hosts with `scheme` and `port` as configured.
///
/// Defaults: with an `auth_url`, its scheme and port (the apps sit behind the same front door
/// as the auth host); otherwise `https` and the first `tls_listen` port when there is an
/// HTTPS listener, else `http` and the first `listen` port (the gateway is the front door).
/// Also refuses an auth host that is an app host and plain-HTTP origins under `redirect_http`.
pub(super) fn public_origins(
    raw: &[super::raw::RawApp],
    server: &ServerConfig,
    apps: &mut [AppConfig],
) -> Checked<()> {
    if let Some(auth) = &server.auth_url {
        if let Some(a) = apps
            .iter()
            .find(|a| a.hosts.iter().any(|h| h == auth.host()))
        {
            return Err(Problem::new(
                "server.auth_url",
                format!(
                    "host `{}` is also an app host (app `{}`); the auth host serves only sign-in",
                    auth.host(),
                    a.name
                ),
            ));
        }
    }
    let (default_scheme, default_port) = match (&server.auth_url, server.tls_listen.first()) {
        (Some(a), _) => (a.scheme(), Some(a.port())),
        (None, Some(tls)) => (Scheme::Https, Some(tls.port())),
        (None, None) => (Scheme::Http, server.listen.first().map(|l| l.port())),
    };
    for (i, (app, r)) in apps.iter_mut().zip(raw).enumerate() {
        let scheme = match r.scheme.as_deref() {
            None => default_scheme,
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            Some(other) => {
                return Err(Problem::new(
                    format!("apps[{i}].scheme"),
                    format!("`{other}` is not \"http\" or \"https\""),
                ))
            }
        };
        if server.redirect_http && scheme == Scheme::Http {
            return Err(Problem::new(
                format!("apps[{i}].scheme"),
                "is http, but redirect_http sends every plain-HTTP request to HTTPS",
            ));
        }
        let port = match r.port {
            Some(0) => {
                return Err(Problem::new(
                    format!("apps[{i}].port"),
                    "must be a port number from 1 to 65535",
                ))
            }
            Some(p) => p,
            // A scheme other than the default's, set without a port: its usual port.
            None if scheme != default_scheme => scheme.default_port(),
            None => default_port.unwrap_or(scheme.default_port()),
        };
        app.origins = app
            .hosts
            .iter()
            .enumerate()
            .map(|(j, h)| {
                origin_host(h)
                    .map(|h| PublicOrigin::new(scheme, &h, port))
                    .ok_or_else(|| {
                        Problem::new(
                            format!("apps[{i}].hosts[{j}]"),
                            format!("`{h}` is not a DNS name or IPv4 address as a browser sends it (write international names in their xn-- form)"),
                        )
                    })
            })
            .collect::<Checked<_>>()?;
    }
    Ok(())
}

/// `host` when it is a DNS name or IPv4 address in the form a browser puts in `Host`.
fn origin_host(host: &str) -> Option<String> {
    match url::Host::parse(host).ok()? {
        url::Host::Domain(d) if d == host => Some(d),
        url::Host::Ipv4(ip) if ip.to_string() == host => Some(host.to_string()),
        _ => None,
    }
}

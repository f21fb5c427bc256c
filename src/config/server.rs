//! Validation of `[server]`: listeners, certificates, trusted proxies, the auth host.

use super::error::Problem;
use super::raw::RawServer;
use super::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

type Checked<T> = Result<T, Problem>;

pub(super) fn server(raw: &RawServer, listen: Vec<SocketAddr>) -> Checked<ServerConfig> {
    let tls_listen = raw
        .tls_listen
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
        .collect::<Checked<Vec<_>>>()?;
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
    let trusted_proxies = match &raw.trusted_proxies {
        None => vec![
            "127.0.0.0/8"
                .parse()
                .map_err(|_| Problem::new("server.trusted_proxies", "bad default"))?,
            "::1/128"
                .parse()
                .map_err(|_| Problem::new("server.trusted_proxies", "bad default"))?,
        ],
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.parse::<ipnet::IpNet>()
                    .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        Problem::new(
                            format!("server.trusted_proxies[{i}]"),
                            format!("`{c}` is not an address or CIDR like \"10.0.0.0/8\""),
                        )
                    })
            })
            .collect::<Checked<Vec<_>>>()?,
    };
    let auth_host = match &raw.auth_host {
        Some(h) if h.is_empty() || h.contains(['/', ':', ' ', '@']) => {
            return Err(Problem::new(
                "server.auth_host",
                format!("`{h}` is not a host name (no scheme, port or path)"),
            ))
        }
        Some(h) => Some(h.to_ascii_lowercase()),
        None => None,
    };
    let upstream_ca_file = match &raw.upstream_ca_file {
        Some(p) => {
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
            Some(path)
        }
        None => None,
    };
    // Checked here so a value that cannot be a header refuses start instead of the header
    // silently never being sent.
    if let Some(h) = &raw.hsts {
        if h.trim().is_empty() || http::HeaderValue::from_str(h).is_err() {
            return Err(Problem::new(
                "server.hsts",
                format!("`{h}` is not a Strict-Transport-Security value like \"max-age=31536000\""),
            ));
        }
        if tls_listen.is_empty() {
            return Err(Problem::new(
                "server.hsts",
                "is only sent on HTTPS and needs a tls_listen address",
            ));
        }
    }
    Ok(ServerConfig {
        listen,
        threads: raw.threads,
        tls_listen,
        certificates,
        trusted_proxies,
        auth_host,
        redirect_http: raw.redirect_http,
        hsts: raw.hsts.clone(),
        upstream_ca_file,
    })
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

//! HTTPS listeners: certificates chosen by SNI (exact names, then `*.` wildcards, then the
//! first certificate as default), HTTP/2 and HTTP/1.1 offered via ALPN.

use crate::config::Certificate;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// A certificate or key that cannot serve: the file (or config key) and why, for the start-up
/// error.
#[derive(Debug, thiserror::Error)]
#[error("certificate {path}: {reason}")]
pub(crate) struct TlsError {
    path: String,
    reason: String,
}

/// Picks the certificate for a handshake by the name the client asked for.
#[derive(Debug)]
pub(crate) struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// A resolver over the configured certificates, each served for the names it covers; the
    /// first one is the default for clients that send no (or an unknown) name.
    ///
    /// # Errors
    /// [`TlsError`] naming the file when a key cannot be read or used for signing or is not
    /// the certificate's, or naming `[server.certificates]` when the list is empty.
    pub(crate) fn new(certs: &[Certificate]) -> Result<Self, TlsError> {
        let mut by_name = HashMap::new();
        let mut default = None;
        for c in certs {
            let key = PrivateKeyDer::from_pem_file(&c.key_path).map_err(|e| TlsError {
                path: c.key_path.display().to_string(),
                reason: e.to_string(),
            })?;
            let signer =
                rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError {
                    path: c.key_path.display().to_string(),
                    reason: e.to_string(),
                })?;
            let ck = Arc::new(CertifiedKey::new(c.chain.clone(), signer));
            // A key that is not the certificate's (say, a certificate swapped on disk before
            // its key): every handshake would fail, so it is refused here, naming both.
            if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
                ck.keys_match()
            {
                return Err(TlsError {
                    path: c.key_path.display().to_string(),
                    reason: format!(
                        "is not the key of the certificate {}",
                        c.cert_path.display()
                    ),
                });
            }
            for name in &c.names {
                by_name.entry(name.clone()).or_insert_with(|| ck.clone());
            }
            default.get_or_insert(ck);
        }
        let default = default.ok_or_else(|| TlsError {
            path: "[server.certificates]".into(),
            reason: "no certificate configured".into(),
        })?;
        Ok(Self { by_name, default })
    }

    fn lookup(&self, name: &str) -> Arc<CertifiedKey> {
        let name = name.to_ascii_lowercase();
        if let Some(ck) = self.by_name.get(&name) {
            return ck.clone();
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(ck) = self.by_name.get(&format!("*.{parent}")) {
                return ck.clone();
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match hello.server_name() {
            Some(name) => self.lookup(name),
            None => self.default.clone(),
        })
    }
}

/// The certificates in force, replaced whole on reload: a handshake under way keeps the
/// certificate it was given, the next one gets the new set.
#[derive(Debug)]
pub(crate) struct LiveCerts {
    current: arc_swap::ArcSwap<SniResolver>,
}

impl LiveCerts {
    /// Serves `first` until [`LiveCerts::replace`].
    pub(crate) fn new(first: SniResolver) -> Self {
        Self {
            current: arc_swap::ArcSwap::from_pointee(first),
        }
    }

    /// Serves `next` from the next handshake on.
    pub(crate) fn replace(&self, next: SniResolver) {
        self.current.store(Arc::new(next));
    }
}

impl ResolvesServerCert for LiveCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load().resolve(hello)
    }
}

/// Writes a self-signed certificate for `localhost` and `*.localhost` (and 127.0.0.1, ::1)
/// into `dir` as `dev.pem` and `dev.key` (mode 0600), for trying HTTPS locally. Returns the
/// paths of the certificate and the key, in that order.
///
/// # Errors
/// The I/O or generation error, as text naming the path.
///
/// `extra` names are added as they are: TLS clients refuse a wildcard directly under a
/// single-label name, so `*.localhost` (kept for tools that accept it) does not cover
/// `wiki.localhost` in browsers, rustls or OpenSSL, and such names must be listed.
pub(crate) fn write_dev_certificate(
    dir: &std::path::Path,
    extra: &[String],
) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let mut names = vec![
        "localhost".to_string(),
        "*.localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    for n in extra {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let cert = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate a certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cert_path = dir.join("dev.pem");
    let key_path = dir.join("dev.key");
    std::fs::write(&cert_path, cert.cert.pem())
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    opts.open(&key_path)
        .and_then(|mut f| f.write_all(cert.key_pair.serialize_pem().as_bytes()))
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    Ok((cert_path, key_path))
}

//! TLS: the gateway's HTTPS listener with the `portcullis certs dev` certificate and a second,
//! CA-signed one chosen by SNI; sign-in over HTTPS with a `Secure` session cookie; HTTP/2 by
//! ALPN; plain HTTP redirected to HTTPS with HSTS; an upstream over TLS verified against a
//! configured CA; a missing or unreadable certificate refusing start with its path named.

use crate::harness::{self, cookie_attrs, toml_str, Echo, Resp};
use crate::support::{api_sign_in, Client, Gateway, Opts, ALICE_PW, SESSION_COOKIE};
use reqwest::cookie::Jar;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Named exactly in the dev certificate. Not a subdomain: rustls (like NSS, OpenSSL and
/// Chromium) refuses a wildcard with a single label after the `*`, so the dev certificate's
/// `*.localhost` verifies for no name.
const DEV_HOST: &str = "localhost";
/// Covered by the CA-signed certificate's `*.apps.other.test`.
const WILDCARD_HOST: &str = "x.apps.other.test";
/// Covered only by the CA-signed certificate.
const OTHER_HOST: &str = "wiki.other.test";

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// A certificate on disk: PEM chain and key, and the DER of its leaf for comparisons.
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

/// `portcullis certs dev --out <dir>` through the real binary.
async fn dev_cert(dir: &Path) -> CertFiles {
    let out = harness::run_cli(
        vec![
            "certs".into(),
            "dev".into(),
            "--out".into(),
            dir.display().to_string(),
        ],
        None,
    )
    .await;
    assert!(out.ok(), "certs dev failed: {}", out.all());
    let cert = dir.join("dev.pem");
    let key = dir.join("dev.key");
    assert!(
        cert.is_file() && key.is_file(),
        "certs dev wrote no dev.pem/dev.key: {}",
        out.all()
    );
    let der = leaf_der(&cert);
    CertFiles { cert, key, der }
}

fn leaf_der(pem: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem)
        .unwrap_or_else(|e| panic!("{}: {e}", pem.display()))
        .to_vec()
}

/// A test CA that signs leaf certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    pem_path: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem_path = dir.join(format!("{name}-ca.pem"));
        fs::write(&pem_path, cert.pem()).unwrap();
        Ca {
            cert,
            key,
            pem_path,
        }
    }

    /// A leaf for `names`, written as `<file>.pem` / `<file>.key` in `dir`.
    fn issue(&self, dir: &Path, file: &str, names: &[&str]) -> CertFiles {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert = dir.join(format!("{file}.pem"));
        let key_path = dir.join(format!("{file}.key"));
        fs::write(&cert, leaf.pem()).unwrap();
        fs::write(&key_path, key.serialize_pem()).unwrap();
        CertFiles {
            cert,
            key: key_path,
            der: leaf.der().to_vec(),
        }
    }
}

/// `[server]` lines for an HTTPS listener on `tls_port` with `certs` (the first is the default).
fn tls_server_extra(tls_port: u16, plain_keys: &str, certs: &[&CertFiles]) -> String {
    let mut s = format!("tls_listen = [\"127.0.0.1:{tls_port}\"]\n{plain_keys}");
    for c in certs {
        s.push_str(&format!(
            "[[server.certificates]]\ncert = {}\nkey = {}\n",
            toml_str(&c.cert.display().to_string()),
            toml_str(&c.key.display().to_string())
        ));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// How a test client speaks HTTP over TLS.
#[derive(Clone, Copy, PartialEq)]
enum Alpn {
    /// Offers h2 and http/1.1, as browsers do.
    Default,
    Http1Only,
}

/// A cookie-keeping client that trusts only `roots` (PEM files), resolves `hosts` to the
/// gateway and reports the peer certificate of every response.
fn https_client(port: u16, hosts: &[&str], roots: &[&Path], alpn: Alpn) -> Client {
    let jar = Arc::new(Jar::default());
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut b = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .tls_built_in_root_certs(false)
        .tls_info(true);
    for h in hosts {
        b = b.resolve(h, addr);
    }
    for r in roots {
        let pem = fs::read(r).unwrap();
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    if alpn == Alpn::Http1Only {
        b = b.http1_only();
    }
    Client {
        http: b.build().unwrap(),
        jar,
        port,
    }
}

/// A client that accepts any certificate, to see which one the gateway picks for a name
/// (the verifying clients show that the pick is also trusted).
fn inspecting_client(port: u16, hosts: &[&str]) -> reqwest::Client {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .danger_accept_invalid_certs(true)
        .tls_info(true);
    for h in hosts {
        b = b.resolve(h, addr);
    }
    b.build().unwrap()
}

/// The DER of the certificate the server presented for this response.
fn peer_cert(r: &reqwest::Response) -> Vec<u8> {
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
        .expect("response carries no TLS peer certificate")
}

async fn get_raw(c: &Client, url: &str, accept: &str) -> Result<reqwest::Response, reqwest::Error> {
    c.http.get(url).header("accept", accept).send().await
}

/// Signs alice in through the JSON API starting from `page` (an app page on `c`'s host, no
/// auth host configured: the flow runs on the app's own host); returns the final response.
async fn sign_in_on_page(c: &Client, page: &str) -> Resp {
    let r = c.page(page).await;
    assert_eq!(
        r.status,
        302,
        "page did not send to sign-in: {}",
        r.describe()
    );
    let login = url::Url::parse(page)
        .unwrap()
        .join(&r.location())
        .unwrap()
        .to_string();
    let (l, p) = (
        url::Url::parse(&login).unwrap(),
        url::Url::parse(page).unwrap(),
    );
    assert_eq!(
        l.origin(),
        p.origin(),
        "sign-in is not on the page's own origin: {login}"
    );
    let (v, r) = api_sign_in(c, &login, "alice", ALICE_PW).await;
    assert_eq!(
        v["to"],
        json!(page),
        "the flow does not return to the page: {v}"
    );
    r
}

/// A gateway with an HTTPS listener; apps on both test names; `upstream` for the apps.
async fn tls_gateway(
    tls: &harness::Listener,
    plain_keys: &str,
    certs: &[&CertFiles],
    upstream: &str,
    dir: tempfile::TempDir,
) -> Gateway {
    Gateway::start_in(
        dir,
        Opts {
            server_extra: tls_server_extra(tls.port(), plain_keys, certs),
            listeners: vec![tls.clone()],
            auth_host: None,
            cookie_domain: None,
            wiki_hosts: vec![DEV_HOST.into(), OTHER_HOST.into()],
            upstream: upstream.into(),
            ..Opts::default()
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// HTTPS listener
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sign_in_over_https_with_the_dev_certificate_reaches_the_upstream_with_a_secure_cookie() {
    let up = harness::Upstream::start().await;
    let dir = crate::support::tempdir("portcullis-tls-");
    let dev = dev_cert(&dir.path().join("certs")).await;
    let tls = harness::Listener::bind();
    let tls_port = tls.port();
    let gw = tls_gateway(&tls, "", &[&dev], &up.addr.to_string(), dir).await;

    let c = https_client(tls_port, &[DEV_HOST], &[&dev.cert], Alpn::Http1Only);
    let page = format!("https://{DEV_HOST}:{tls_port}/wiki/Main_Page");
    let done = sign_in_on_page(&c, &page).await;
    let set = done
        .set_cookie(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("no session cookie over HTTPS: {}", done.describe()));
    let attrs = cookie_attrs(&set);
    assert!(
        attrs.contains_key("secure"),
        "session cookie issued on HTTPS lacks Secure: {set}"
    );
    assert!(attrs.contains_key("httponly"), "{set}");

    let r = get_raw(&c, &page, "text/html")
        .await
        .expect("GET page over HTTPS");
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(
        peer_cert(&r),
        dev.der,
        "the dev certificate was not presented"
    );
    let r = Resp::read(r).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let echo = r.echo();
    assert_eq!(echo.path, "/wiki/Main_Page");
    assert_eq!(
        echo.header("remote-user"),
        Some("alice"),
        "{:?}",
        echo.headers
    );
    assert_eq!(echo.header("remote-email"), Some("alice@example.test"));
    assert!(
        !echo.cookies().iter().any(|(k, _)| k == SESSION_COOKIE),
        "the session cookie leaked upstream: {:?}",
        echo.cookies()
    );

    // The same gateway's plain listener issues the cookie without Secure (a browser would
    // drop a Secure cookie set over http://).
    let plain = https_client(gw.port, &[DEV_HOST], &[], Alpn::Http1Only);
    let page = format!("http://{DEV_HOST}:{}/wiki/Main_Page", gw.port);
    let r = plain.page(&page).await;
    assert_eq!(r.status, 302, "{}", r.describe());
    let login = url::Url::parse(&page)
        .unwrap()
        .join(&r.location())
        .unwrap()
        .to_string();
    let (v, done) = api_sign_in(&plain, &login, "alice", ALICE_PW).await;
    // The way back is the app's configured origin: HTTPS on the first tls_listen port.
    assert_eq!(
        v["to"],
        json!(format!("https://{DEV_HOST}:{tls_port}/wiki/Main_Page")),
        "{v}"
    );
    let set = done
        .set_cookie(SESSION_COOKIE)
        .expect("session cookie over HTTP");
    assert!(
        !cookie_attrs(&set).contains_key("secure"),
        "session cookie issued on plain HTTP is Secure: {set}"
    );
}

#[tokio::test]
async fn sni_picks_the_certificate_for_the_requested_name() {
    let up = harness::Upstream::start().await;
    let dir = crate::support::tempdir("portcullis-tls-");
    let certs = dir.path().join("certs");
    let dev = dev_cert(&certs).await;
    let ca = Ca::new(&certs, "other");
    let other = ca.issue(&certs, "other", &[OTHER_HOST, "*.apps.other.test"]);
    let first = ca.issue(&certs, "first", &["first.test"]);
    let tls = harness::Listener::bind();
    let tls_port = tls.port();
    // Another certificate first: it is the default, so the dev and the other certificate are
    // only presented when SNI picks them.
    let _gw = tls_gateway(&tls, "", &[&first, &dev, &other], &up.addr.to_string(), dir).await;
    let hosts = [DEV_HOST, OTHER_HOST];
    let dev_url = format!("https://{DEV_HOST}:{tls_port}/public/a");
    let other_url = format!("https://{OTHER_HOST}:{tls_port}/public/b");

    // Trusting only the dev certificate: its name works, the other name gets a certificate
    // this client cannot verify.
    let trusts_dev = https_client(tls_port, &hosts, &[&dev.cert], Alpn::Default);
    assert_served(&trusts_dev, &dev_url, &dev.der, "/public/a").await;
    assert!(
        get_raw(&trusts_dev, &other_url, "*/*").await.is_err(),
        "{OTHER_HOST} was served a certificate the dev root verifies"
    );

    // Trusting only the other CA: the reverse.
    let trusts_ca = https_client(tls_port, &hosts, &[&ca.pem_path], Alpn::Default);
    assert_served(&trusts_ca, &other_url, &other.der, "/public/b").await;
    assert!(
        get_raw(&trusts_ca, &dev_url, "*/*").await.is_err(),
        "{DEV_HOST} was served the other CA's certificate"
    );

    // A name under the other certificate's wildcard gets it, verified.
    let r = get_raw(
        &https_client(tls_port, &[WILDCARD_HOST], &[&ca.pem_path], Alpn::Default),
        &format!("https://{WILDCARD_HOST}:{tls_port}/.portcullis/ping"),
        "*/*",
    )
    .await
    .expect("wildcard name over HTTPS");
    assert_eq!(
        peer_cert(&r),
        other.der,
        "{WILDCARD_HOST} did not get the wildcard certificate"
    );

    // An unknown name and a handshake without SNI (an IP address) get the first certificate.
    let inspect = inspecting_client(tls_port, &["nobody.unknown.test"]);
    for (host, want, what) in [
        (
            "nobody.unknown.test",
            &first.der,
            "the first (default) certificate",
        ),
        (
            "127.0.0.1",
            &first.der,
            "the first (default) certificate without SNI",
        ),
    ] {
        let r = inspect
            .get(format!("https://{host}:{tls_port}/.portcullis/ping"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("HTTPS to {host}: {e}"));
        assert!(peer_cert(&r) == *want, "{host} did not get {what}");
        assert_eq!(r.text().await.unwrap(), "pong");
    }
}

/// `url` is served, over a client that verifies it, with the certificate `der`, and the
/// request reaches the upstream at `path`.
async fn assert_served(client: &Client, url: &str, der: &[u8], path: &str) {
    let r = get_raw(client, url, "*/*")
        .await
        .unwrap_or_else(|e| panic!("{url} over HTTPS: {e}"));
    assert!(
        peer_cert(&r) == der,
        "{url} was not served the expected certificate"
    );
    let r = Resp::read(r).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.echo().path, path);
}

#[tokio::test]
async fn https_negotiates_http2_and_signed_in_requests_work_over_it() {
    let up = harness::Upstream::start().await;
    let dir = crate::support::tempdir("portcullis-tls-");
    let dev = dev_cert(&dir.path().join("certs")).await;
    let tls = harness::Listener::bind();
    let tls_port = tls.port();
    let _gw = tls_gateway(&tls, "", &[&dev], &up.addr.to_string(), dir).await;

    // A default client offers h2 and http/1.1 by ALPN; the gateway must pick h2.
    let c = https_client(tls_port, &[DEV_HOST], &[&dev.cert], Alpn::Default);
    let page = format!("https://{DEV_HOST}:{tls_port}/wiki/h2");
    let r = get_raw(&c, &page, "application/json")
        .await
        .expect("GET over HTTPS");
    assert_eq!(
        r.version(),
        reqwest::Version::HTTP_2,
        "ALPN did not pick HTTP/2"
    );
    assert_eq!(r.status(), 401, "unauthenticated API request over h2");

    let done = sign_in_on_page(&c, &page).await;
    assert!(
        done.set_cookie(SESSION_COOKIE).is_some(),
        "{}",
        done.describe()
    );
    let r = get_raw(&c, &page, "text/html")
        .await
        .expect("GET page over h2");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let r = Resp::read(r).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let echo = r.echo();
    assert_eq!(echo.path, "/wiki/h2");
    assert_eq!(
        echo.header("remote-user"),
        Some("alice"),
        "{:?}",
        echo.headers
    );
    assert!(
        echo.header("host").is_some_and(|h| h.starts_with(DEV_HOST)),
        "the upstream did not get the client's host from the h2 authority: {:?}",
        echo.headers
    );
}

#[tokio::test]
async fn plain_http_redirects_to_https_and_https_answers_carry_hsts() {
    let up = harness::Upstream::start().await;
    let dir = crate::support::tempdir("portcullis-tls-");
    let dev = dev_cert(&dir.path().join("certs")).await;
    let tls = harness::Listener::bind();
    let tls_port = tls.port();
    let hsts = "max-age=63072000; includeSubDomains";
    let keys = format!("redirect_http = true\nhsts = \"{hsts}\"\n");
    let gw = tls_gateway(&tls, &keys, &[&dev], &up.addr.to_string(), dir).await;

    let plain = https_client(gw.port, &[DEV_HOST], &[], Alpn::Http1Only);
    let r = plain
        .page(&format!(
            "http://{DEV_HOST}:{}/wiki/Page?action=edit&x=1",
            gw.port
        ))
        .await;
    assert!(
        matches!(r.status, 301 | 308),
        "plain HTTP not redirected: {}",
        r.describe()
    );
    assert_eq!(
        r.location(),
        format!("https://{DEV_HOST}:{tls_port}/wiki/Page?action=edit&x=1"),
        "redirect does not keep host, path and query on the HTTPS port"
    );
    assert_eq!(
        r.header("strict-transport-security"),
        None,
        "HSTS must not be sent over plain HTTP"
    );
    assert_eq!(up.hits(), 0, "a plain-HTTP request reached the upstream");

    let c = https_client(tls_port, &[DEV_HOST], &[&dev.cert], Alpn::Default);
    // The gateway's own answer (401) and a proxied upstream answer both carry HSTS.
    let r = c
        .get(
            &format!("https://{DEV_HOST}:{tls_port}/wiki/Page"),
            "application/json",
            &[],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.describe());
    assert_eq!(r.header("strict-transport-security").as_deref(), Some(hsts));
    let r = c
        .get(
            &format!("https://{DEV_HOST}:{tls_port}/public/x"),
            "*/*",
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.echo().path, "/public/x");
    assert_eq!(r.header("strict-transport-security").as_deref(), Some(hsts));

    // The answer-only endpoints, which the intake answers itself for HTTP/1.1 over TLS too,
    // carry HSTS there, and not over plain HTTP.
    let h1 = https_client(tls_port, &[DEV_HOST], &[&dev.cert], Alpn::Http1Only);
    for path in ["/.portcullis/ping", "/.portcullis/auth/traefik"] {
        let r = h1
            .get(
                &format!("https://{DEV_HOST}:{tls_port}{path}"),
                "application/json",
                &[],
            )
            .await;
        assert_eq!(
            r.header("strict-transport-security").as_deref(),
            Some(hsts),
            "{path} over TLS: {}",
            r.describe()
        );
    }
    let r = plain
        .get(
            &format!("http://{DEV_HOST}:{}/.portcullis/ping", gw.port),
            "*/*",
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.header("strict-transport-security"), None);
}

// ---------------------------------------------------------------------------------------------
// Upstreams over TLS
// ---------------------------------------------------------------------------------------------

/// An HTTPS echo upstream: answers every request with a JSON report of its method, path,
/// headers and the SNI name the client sent; one request per connection.
struct TlsUpstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    /// TCP connections accepted, handshake or not.
    connections: Arc<AtomicUsize>,
}

impl TlsUpstream {
    /// Listens where `localhost` resolves first, the address the gateway will dial.
    fn start(cert: &CertFiles) -> TlsUpstream {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&cert.key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let config = Arc::new(config);
        let local = ("localhost", 0)
            .to_socket_addrs()
            .unwrap()
            .next()
            .expect("localhost resolves");
        let listener = TcpListener::bind(local).expect("bind TLS upstream");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (h, conns) = (hits.clone(), connections.clone());
        // Blocking threads: the listener lives as long as the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                conns.fetch_add(1, Ordering::SeqCst);
                let (config, h) = (config.clone(), h.clone());
                std::thread::spawn(move || {
                    let _ = serve_tls_connection(stream, config, &h);
                });
            }
        });
        TlsUpstream {
            addr,
            hits,
            connections,
        }
    }
}

fn serve_tls_connection(
    tcp: std::net::TcpStream,
    config: Arc<rustls::ServerConfig>,
    hits: &AtomicUsize,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let sni = tls.conn.server_name().map(str::to_string);
    hits.fetch_add(1, Ordering::SeqCst);
    let body =
        json!({ "method": method, "path": path, "headers": headers, "sni": sni }).to_string();
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(resp.as_bytes())?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// A gateway (plain listener, forward-auth host layout) whose apps use `upstream`.
async fn gateway_with_upstream(upstream: String, server_extra: String) -> Gateway {
    Gateway::start(Opts {
        server_extra,
        upstream,
        ..Opts::default()
    })
    .await
}

/// Signs alice in on the plain listener; returns the client and the app page URL.
async fn alice_plain(gw: &Gateway) -> (Client, String) {
    use crate::support::{assert_auth_redirect, WIKI};
    let c = Client::new(gw.addr());
    let page = c.url(WIKI, "/tls-upstream/page");
    let r = c.page(&page).await;
    let login = assert_auth_redirect(&r, &page);
    api_sign_in(&c, &login, "alice", ALICE_PW).await;
    (c, page)
}

#[tokio::test]
async fn upstream_over_tls_verified_by_the_configured_ca_gets_sni_and_identity() {
    let dir = crate::support::tempdir("portcullis-tls-up-");
    let ca = Ca::new(dir.path(), "upstream");
    let leaf = ca.issue(dir.path(), "upstream", &["localhost"]);
    let up = TlsUpstream::start(&leaf);
    let gw = gateway_with_upstream(
        format!("https://localhost:{}", up.addr.port()),
        format!(
            "upstream_ca_file = {}\n",
            toml_str(&ca.pem_path.display().to_string())
        ),
    )
    .await;

    let (c, page) = alice_plain(&gw).await;
    let r = c.page(&page).await;
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), gw.logs());
    let v: Value = r.json();
    assert_eq!(
        v["sni"], "localhost",
        "the gateway did not send the upstream's name as SNI: {v}"
    );
    let echo = Echo::from_json(&v);
    assert_eq!(echo.path, "/tls-upstream/page");
    assert_eq!(echo.header("remote-user"), Some("alice"), "{v}");
    assert_eq!(echo.header("remote-groups"), Some("admins,staff"), "{v}");
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn upstream_certificate_from_an_unconfigured_ca_is_refused_with_502() {
    let dir = crate::support::tempdir("portcullis-tls-up-");
    let ca = Ca::new(dir.path(), "untrusted");
    let leaf = ca.issue(dir.path(), "upstream", &["localhost"]);
    let up = TlsUpstream::start(&leaf);
    // No upstream_ca_file: the system roots, which do not know this CA.
    let gw = gateway_with_upstream(
        format!("https://localhost:{}", up.addr.port()),
        String::new(),
    )
    .await;

    let r = assert_upstream_refused(&gw, &up, "an unverifiable upstream").await;
    assert!(!r.body.contains("remote-user"), "{}", r.body);
}

/// A signed-in page load through `gw` to the TLS upstream `up` gets 502: the gateway dialled
/// it, refused its certificate, and sent no request.
async fn assert_upstream_refused(gw: &Gateway, up: &TlsUpstream, what: &str) -> Resp {
    let (c, page) = alice_plain(gw).await;
    let r = c.page(&page).await;
    assert_eq!(r.status, 502, "{what} was used: {}", r.describe());
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        0,
        "a request reached {what}"
    );
    assert!(
        up.connections.load(Ordering::SeqCst) >= 1,
        "the gateway never dialled the upstream"
    );
    r
}

#[tokio::test]
async fn upstream_certificate_for_another_name_is_refused_with_502() {
    let dir = crate::support::tempdir("portcullis-tls-up-");
    let ca = Ca::new(dir.path(), "upstream");
    // Signed by the configured CA, but not for the name the gateway dials.
    let leaf = ca.issue(dir.path(), "upstream", &["elsewhere.test"]);
    let up = TlsUpstream::start(&leaf);
    let gw = gateway_with_upstream(
        format!("https://localhost:{}", up.addr.port()),
        format!(
            "upstream_ca_file = {}\n",
            toml_str(&ca.pem_path.display().to_string())
        ),
    )
    .await;

    assert_upstream_refused(&gw, &up, "an upstream with a wrong-name certificate").await;
}

// ---------------------------------------------------------------------------------------------
// Refusing to start
// ---------------------------------------------------------------------------------------------

/// Writes a config (under `dir`, as `name.toml`) whose `[server]` gets `server_extra`, and runs
/// `cmd` (`check-config` or `serve`) against it.
async fn run_with_server(
    dir: &Path,
    name: &str,
    server_extra: String,
    cmd: &str,
) -> harness::CliOut {
    let db = dir.join("data").join("portcullis.db");
    let config = dir.join(format!("{name}.toml"));
    let o = Opts {
        server_extra,
        upstream: "127.0.0.1:9".into(),
        ..Opts::default()
    };
    fs::write(
        &config,
        crate::support::config_toml(harness::reserved_port(), &db, &o),
    )
    .unwrap();
    harness::run_cli(
        vec!["--config".into(), config.display().to_string(), cmd.into()],
        None,
    )
    .await
}

/// Writes a config with one certificate entry and runs `cmd` against it.
async fn run_with_certificate(dir: &Path, cert: &Path, key: &Path, cmd: &str) -> harness::CliOut {
    let certs = CertFiles {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        der: Vec::new(),
    };
    let server = tls_server_extra(harness::reserved_port(), "", &[&certs]);
    run_with_server(dir, cmd, server, cmd).await
}

fn assert_refused(out: &harness::CliOut, path: &Path, what: &str) {
    assert_ne!(out.code, Some(0), "{what}: started anyway: {}", out.all());
    assert!(
        out.stderr.contains(&path.display().to_string()),
        "{what}: the error does not name {}: {}",
        path.display(),
        out.all()
    );
}

#[tokio::test]
async fn missing_certificate_or_key_refuses_start_naming_the_path() {
    let dir = crate::support::tempdir("portcullis-tls-bad-");
    let dev = dev_cert(&dir.path().join("certs")).await;
    let missing_cert = dir.path().join("certs").join("missing.pem");
    let missing_key = dir.path().join("certs").join("missing.key");

    for cmd in ["check-config", "serve"] {
        let out = run_with_certificate(dir.path(), &missing_cert, &dev.key, cmd).await;
        assert_refused(&out, &missing_cert, &format!("{cmd} with a missing cert"));
        let out = run_with_certificate(dir.path(), &dev.cert, &missing_key, cmd).await;
        assert_refused(&out, &missing_key, &format!("{cmd} with a missing key"));
    }
}

#[tokio::test]
async fn unreadable_certificate_or_key_refuses_start_naming_the_path() {
    let dir = crate::support::tempdir("portcullis-tls-bad-");
    let dev = dev_cert(&dir.path().join("certs")).await;
    // Tests may run as root, so "unreadable" is a file that is not PEM, or a directory.
    let garbage = dir.path().join("certs").join("garbage.pem");
    fs::write(&garbage, "this is not a certificate\n").unwrap();
    let a_dir = dir.path().join("certs").join("a-directory.pem");
    fs::create_dir_all(&a_dir).unwrap();
    // A certificate where the key should be.
    let cert_as_key = dev.cert.clone();

    for cmd in ["check-config", "serve"] {
        let out = run_with_certificate(dir.path(), &garbage, &dev.key, cmd).await;
        assert_refused(&out, &garbage, &format!("{cmd} with a non-PEM cert"));
        let out = run_with_certificate(dir.path(), &a_dir, &dev.key, cmd).await;
        assert_refused(&out, &a_dir, &format!("{cmd} with a directory as cert"));
        let out = run_with_certificate(dir.path(), &dev.cert, &cert_as_key, cmd).await;
        assert_refused(
            &out,
            &cert_as_key,
            &format!("{cmd} with no key in the key file"),
        );
    }
}

#[tokio::test]
async fn hsts_that_cannot_be_sent_refuses_start_naming_the_key() {
    let dir = crate::support::tempdir("portcullis-tls-bad-");
    let dev = dev_cert(&dir.path().join("certs")).await;
    let cases = [
        (
            // A control character: not a header value.
            tls_server_extra(
                harness::reserved_port(),
                "hsts = \"max-age=1\\u0007\"\n",
                &[&dev],
            ),
            "a value that is not a header",
        ),
        (
            // Without an HTTPS listener the header would never be sent.
            "hsts = \"max-age=31536000\"\n".to_string(),
            "no tls_listen",
        ),
    ];
    for (i, (server_extra, what)) in cases.into_iter().enumerate() {
        let out = run_with_server(
            dir.path(),
            &format!("hsts-{i}"),
            server_extra,
            "check-config",
        )
        .await;
        assert_ne!(out.code, Some(0), "{what}: accepted: {}", out.all());
        assert!(
            out.stderr.contains("server.hsts"),
            "{what}: key not named: {}",
            out.all()
        );
    }
    // The same value with an HTTPS listener is fine.
    let server = tls_server_extra(
        harness::reserved_port(),
        "hsts = \"max-age=31536000\"\n",
        &[&dev],
    );
    let out = run_with_server(dir.path(), "hsts-ok", server, "check-config").await;
    assert!(
        out.ok(),
        "a valid hsts with tls_listen refused: {}",
        out.all()
    );
}

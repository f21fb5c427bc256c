//! Policies bound to apps in proxy mode (the shared table of
//! tests/support/app_policies_table.rs), their message on the HTML page and in JSON, the
//! config refusals, and `portcullis access check` printing each app policy's verdict.

use crate::app_policies_table::*;
use crate::harness::*;

fn setup() -> Setup {
    Setup {
        extra_toml: app_policies_toml("builtin:whoami", FLOW),
        ..Setup::default()
    }
}

/// In this suite bob is in `admins`, alice is not.
async fn cookies(gw: &Gateway) -> (String, String) {
    let bob = api_sign_in(&gw.browser(), "bob", BOB_PW).await.token;
    let alice = api_sign_in(&gw.browser(), "alice", ALICE_PW).await.token;
    (
        format!("{SESSION_COOKIE}={bob}"),
        format!("{SESSION_COOKIE}={alice}"),
    )
}

fn client(gw: &Gateway) -> reqwest::Client {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], gw.port).into();
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    for h in HOSTS {
        b = b.resolve(h, addr);
    }
    b.build().expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn app_policies_decide_in_proxy_mode_with_their_messages() {
    let gw = Gateway::start_with(setup()).await;
    let (admin, staff) = cookies(&gw).await;
    let http = client(&gw);
    for &(host, path, who, from, want, message) in CASES {
        // The test client is on loopback, a trusted proxy by default: its X-Forwarded-For
        // names the client the policies see.
        let mut rb = http
            .get(format!("http://{host}:{}{path}", gw.port))
            .header("accept", "application/json")
            .header("x-forwarded-for", from);
        match who {
            Who::Anonymous => {}
            Who::Admin => rb = rb.header("cookie", &admin),
            Who::Staff => rb = rb.header("cookie", &staff),
        }
        let r = Resp::read(rb.send().await.expect("request")).await;
        let what = format!("{host}{path} as {who:?} from {from}: {}", r.describe());
        assert_eq!(seen(r.status), Some(want), "{what}");
        if let Some(m) = message {
            let v = r.json();
            assert_eq!(v["error"], "access_denied", "{what}");
            assert_eq!(v["message"], m, "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusing_app_policy_shows_its_message_on_the_html_page() {
    let gw = Gateway::start_with(setup()).await;
    let (_, staff) = cookies(&gw).await;
    let r = client(&gw)
        .get(format!("http://{ADMINS}:{}/x", gw.port))
        .header("accept", ACCEPT_HTML)
        .header("cookie", &staff)
        .send()
        .await
        .expect("request");
    let r = Resp::read(r).await;
    assert_eq!(r.status, 403, "{}", r.describe());
    assert!(
        r.content_type().starts_with("text/html"),
        "{}",
        r.describe()
    );
    assert!(r.body.contains("Admins only."), "{}", r.body);
    assert!(r.body.contains("signed in as alice"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn access_check_prints_each_app_policys_verdict() {
    let gw = Gateway::prepare(setup()).await;
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "--user",
                "alice",
                "--ip",
                "203.0.113.7",
                "http://all.policy.test/x",
            ],
            &[
                "verdict: refused: 403",
                "app policy lab: fail",
                "app policy admins: fail",
                "app policies: refuse: From the lab only. Admins only.",
            ],
        ),
        (
            &[
                "--user",
                "bob",
                "--ip",
                "10.2.3.4",
                "http://all.policy.test/x",
            ],
            &[
                "verdict: allow",
                "app policy lab: pass",
                "app policy admins: pass",
                "app policies: pass",
            ],
        ),
        (
            &[
                "--user",
                "alice",
                "--ip",
                "81.2.69.142",
                "http://uk.policy.test/x",
            ],
            &["verdict: allow", "app policy uk: pass"],
        ),
        (
            &[
                "--user",
                "alice",
                "--ip",
                "89.160.20.112",
                "http://uk.policy.test/x",
            ],
            &["verdict: refused", "app policy uk: fail"],
        ),
        (
            &["--user", "bob", "http://broken.policy.test/x"],
            &["app policy broken: error", "app policies: refuse"],
        ),
        (
            &["http://admins.policy.test/x"],
            &[
                "verdict: sign in",
                "app policies: not judged without a session",
            ],
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["access", "check"];
        all.extend_from_slice(args);
        let out = gw.cli(&all, None).await;
        assert!(out.ok(), "{args:?}: {}", out.all());
        for w in *want {
            assert!(
                out.stdout.contains(w),
                "{args:?}: no {w:?} in\n{}",
                out.stdout
            );
        }
    }
}

#[test]
fn bad_app_policy_and_geoip_keys_refuse_the_config_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_a_db = dir.path().join("x.mmdb");
    std::fs::write(&not_a_db, b"not a database").expect("write");
    let app = |keys: &str| {
        format!("[[apps]]\nname = \"p\"\nhosts = [\"p.test\"]\nupstream = \"127.0.0.1:9\"\nflow = \"{FLOW}\"\n{keys}\n")
    };
    let expr = "[policies.e]\nkind = \"expression\"\nexpression = \"true\"\n";
    let cases: Vec<(String, &str)> = vec![
        (
            app("policies = [\"nope\"]"),
            "apps[3].policies[0]: no policy named `nope`",
        ),
        (
            format!(
                "{expr}{}",
                app("policies = [\"e\"]\npolicy_engine_mode = \"most\"")
            ),
            "apps[3].policy_engine_mode",
        ),
        (app("negate = true"), "apps[3].negate"),
        (
            format!(
                "[policies.rep]\nkind = \"reputation\"\nthreshold = 3\n{}",
                app("policies = [\"rep\"]")
            ),
            "apps[3].policies[0]: `rep` is a reputation policy",
        ),
        (
            format!(
                "[policies.pw]\nkind = \"password\"\nlength_min = 8\n{}",
                app("policies = [\"pw\"]")
            ),
            "apps[3].policies[0]: `pw` is a password policy",
        ),
        (
            "[policies.c]\nkind = \"expression\"\nexpression = \"request.country == 'GB'\"\n"
                .into(),
            "policies.c.expression: reads request.country, but no [geoip] database",
        ),
        (
            "[geoip]\ndatabase = \"/nonexistent/GeoLite2-Country.mmdb\"\n".into(),
            "geoip.database: cannot read /nonexistent/GeoLite2-Country.mmdb",
        ),
        (
            format!("[geoip]\ndatabase = \"{}\"\n", not_a_db.display()),
            "is not a MaxMind database",
        ),
    ];
    for (i, (extra, want)) in cases.into_iter().enumerate() {
        let text = config_toml(
            reserved_port(),
            "127.0.0.1:9".parse().expect("addr"),
            reserved_port(),
            &dir.path().join("data").join("portcullis.db"),
            &Setup {
                extra_toml: extra.clone(),
                ..Setup::default()
            },
        );
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, text).expect("write");
        let out = check_config(&path);
        assert!(!out.ok(), "{extra}\naccepted: {}", out.all());
        assert!(
            out.stderr.contains(want),
            "{extra}\nwant {want:?} in: {}",
            out.all()
        );
    }
}

/// The country comes from the address the gateway trusts: from a client that is not a
/// trusted proxy, forwarding headers naming a British address give it no country.
#[tokio::test(flavor = "multi_thread")]
async fn a_country_policy_cannot_be_passed_with_forged_forwarding_headers() {
    let gw = Gateway::start_with(Setup {
        server_toml: "trusted_proxies = []".into(),
        ..setup()
    })
    .await;
    let (_, staff) = cookies(&gw).await;
    let http = client(&gw);
    for (name, value) in [
        ("x-forwarded-for", "81.2.69.142"),
        ("x-forwarded-for", "81.2.69.142, 81.2.69.142"),
        ("forwarded", "for=81.2.69.142"),
        ("x-real-ip", "81.2.69.142"),
        ("true-client-ip", "81.2.69.142"),
    ] {
        let r = http
            .get(format!("http://{UK}:{}/x", gw.port))
            .header("accept", "application/json")
            .header("cookie", &staff)
            .header(name, value)
            .send()
            .await
            .expect("request");
        let r = Resp::read(r).await;
        assert_eq!(r.status, 403, "{name}: {value}: {}", r.describe());
        assert_eq!(
            r.json()["message"],
            "Only from the United Kingdom.",
            "{name}"
        );
    }
}

/// `request.country` in a flow's binding: who may start it, by the address the gateway
/// trusts, with the policy's message.
#[tokio::test(flavor = "multi_thread")]
async fn a_flow_bound_country_policy_lets_only_its_country_start_the_flow() {
    let gw = Gateway::start_with(Setup {
        extra_toml: format!(
            "{}\n[[flows]]\nslug = \"uk-only\"\ndesignation = \"authentication\"\nstages = [\"identify\", \"password\", \"login\"]\npolicies = [\"uk\"]\n",
            app_policies_toml("builtin:whoami", FLOW)
        ),
        ..Setup::default()
    })
    .await;
    for (from, component) in [
        ("81.2.69.142", "identification"),
        ("89.160.20.112", "access_denied"),
    ] {
        // A fresh client each time: a kept flow cookie would resume the planned execution.
        let b = gw.browser();
        let r = b
            .send(
                b.http
                    .get(b.url_on(APP, "/.portcullis/api/flow/uk-only"))
                    .header("accept", "application/json")
                    .header("x-forwarded-for", from),
            )
            .await;
        let v = r.json();
        assert_eq!(v["component"], component, "{from}: {v}");
        if component == "access_denied" {
            assert_eq!(v["errors"][0], "Only from the United Kingdom.", "{v}");
        }
    }
}

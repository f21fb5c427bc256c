//! The access rules through [`Gate::judge`], over an in-memory store and a manual clock: every
//! rule field, first-match order, default deny, step-up with `max_age`, bent paths.

use super::*;
use crate::clock::ManualClock;
use crate::config::ConfigError;
use crate::session::NewSession;
use crate::store::MemoryStore;
use std::path::Path;

/// The README's grafana example plus one rule per remaining field.
pub(crate) const RULES: &str = r#"
[networks]
monitoring = ["10.1.0.0/16", "fd00:1::/32"]

[[apps]]
name = "grafana"
hosts = ["grafana.test", "alt.test", "other.test"]
upstream = "127.0.0.1:9"
flow = "f"
default_policy = "deny"

[[apps.rules]]
resources = ["^/api/"]
networks = ["monitoring"]
policy = "bypass"

[[apps.rules]]
resources = ["^/admin"]
policy = "two_factor"
max_age = "10m"

[[apps.rules]]
domain = "alt.test"
policy = "deny"

[[apps.rules]]
resources = "^/ops/"
subject = [["group:ops"], ["user:carol"]]
policy = "one_factor"

[[apps.rules]]
resources = ["^/ops/"]
policy = "deny"

[[apps.rules]]
methods = ["post", "PUT"]
resources = ["^/write"]
policy = "deny"

[[apps.rules]]
resources = ["^/report"]
query = [[{ key = "format", value = "csv" }], [{ key = "debug", operator = "present" }]]
policy = "deny"

[[apps.rules]]
resources = ["^/mail/"]
factors = ["email"]
policy = "one_factor"

[[apps.rules]]
resources = ["^/both/"]
subject = ["group:ops", "user:dave"]
policy = "one_factor"

[[apps.rules]]
resources = ["^/both/"]
policy = "deny"

[[apps.rules]]
domain_regex = '^grafana\.'
networks = ["192.0.2.0/24", "10.0.0.0/8"]
policy = "one_factor"

[[apps.rules]]
domain = "*.test"
policy = "one_factor"

[[flows]]
slug = "f"
designation = "authentication"
stages = ["id", "pw", "mfa", "login"]
[stages.id]
kind = "identification"
[stages.pw]
kind = "password"
[stages.mfa]
kind = "authenticator_validate"
device_classes = ["email"]
not_configured_action = "skip"
[stages.login]
kind = "user_login"
"#;

pub(crate) struct World {
    pub gate: Gate,
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

pub(crate) fn world(text: &str) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::from_toml(text, &dir.path().join("p.toml"), std::iter::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let clock = Arc::new(ManualClock::default());
    let store: Arc<dyn crate::store::Store> = Arc::new(MemoryStore::new());
    let sessions = SessionService::with_clock(
        &config.session,
        dir.path().join("keys.json"),
        store,
        clock.clone(),
    )
    .expect("sessions");
    World {
        gate: Gate::new(Arc::new(config), Arc::new(sessions)),
        clock,
        _dir: dir,
    }
}

impl World {
    /// A cookie header for `user` in `groups` whose session proves `factors` and completed
    /// the app's flow.
    pub(crate) fn signed_in(&self, user: &str, groups: &[&str], factors: Factors) -> HeaderMap {
        self.signed_in_by(user, groups, factors, &["identification", "password"])
    }

    /// [`World::signed_in`] with the session's `amr` (its stage kinds) given.
    pub(crate) fn signed_in_by(
        &self,
        user: &str,
        groups: &[&str],
        factors: Factors,
        amr: &[&str],
    ) -> HeaderMap {
        let (token, _) = self
            .gate
            .sessions()
            .issue(NewSession {
                username: user.into(),
                name: user.into(),
                email: format!("{user}@example.com"),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                amr: amr.iter().map(|k| k.to_string()).collect(),
                factors,
                flows: vec!["f".into()],
                lifetime_secs: 86_400,
            })
            .expect("issue");
        let mut h = HeaderMap::new();
        let cookie = format!("{}={token}", self.gate.config().session.cookie_name);
        h.insert(http::header::COOKIE, cookie.parse().expect("cookie"));
        h
    }

    /// The decision's name and the rule that made it.
    pub(crate) fn ask(
        &self,
        method: &str,
        url: &str,
        client: &str,
        headers: &HeaderMap,
    ) -> (&'static str, Matched, Vec<Wanted>) {
        let (authority, path_and_query) = url
            .split_once('/')
            .map_or((url, "/"), |(a, _)| (a, &url[a.len()..]));
        let path = path_and_query.split('?').next().unwrap_or("/");
        let method: Method = method.parse().expect("method");
        let v = self.gate.judge(
            &AccessRequest {
                method: &method,
                scheme: "http",
                authority,
                path,
                path_and_query,
                headers,
                client: client.parse().ok(),
            },
            || self.gate.session(headers),
        );
        (name(&v.decision), v.matched, v.wanted)
    }
}

pub(crate) fn name(d: &Decision<'_>) -> &'static str {
    match d {
        Decision::UnknownHost => "unknown_host",
        Decision::Bypass { .. } => "bypass",
        Decision::Allow { .. } => "allow",
        Decision::Unauthenticated { .. } => "unauthenticated",
        Decision::Denied { .. } => "denied",
        Decision::Forbidden { .. } => "forbidden",
        Decision::StepUp { .. } => "step_up",
        Decision::Refused { .. } => "refused",
    }
}

const OFFICE: &str = "192.0.2.9";
const MONITOR: &str = "10.1.2.3";

#[test]
fn every_rule_field_decides_in_file_order_and_unmatched_is_denied() {
    let w = world(RULES);
    let none = HeaderMap::new();
    let two = Factors::PASSWORD.with(Factors::EMAIL);
    let alice = w.signed_in("alice", &[], two);
    let ops = w.signed_in("olga", &["ops"], two);
    let carol = w.signed_in("carol", &[], two);
    let dave = w.signed_in("dave", &["ops"], two);
    let use_ = Matched::Rule;
    #[rustfmt::skip]
    let table: &[(&str, &str, &str, &HeaderMap, &str, Matched)] = &[
        // networks (named, IPv6 in a named network, mapped IPv4) and resources
        ("GET", "grafana.test/api/health", MONITOR, &none, "bypass", use_(0)),
        ("GET", "grafana.test/api/health", "fd00:1::7", &none, "bypass", use_(0)),
        ("GET", "grafana.test/api/health", "::ffff:10.1.2.3", &none, "bypass", use_(0)),
        ("GET", "grafana.test/api/health", OFFICE, &none, "unauthenticated", use_(10)),
        ("GET", "grafana.test/api/health", "", &none, "unauthenticated", use_(11)),
        ("GET", "grafana.test/API/health", MONITOR, &none, "unauthenticated", use_(10)),
        // domain beats the later catch-all; deny holds signed in or not
        ("GET", "alt.test/anything", OFFICE, &alice, "denied", use_(2)),
        ("GET", "alt.test/anything", OFFICE, &none, "denied", use_(2)),
        ("GET", "ALT.test:8080/anything", OFFICE, &none, "denied", use_(2)),
        // subject: list of lists is OR
        ("GET", "grafana.test/ops/x", OFFICE, &ops, "allow", use_(3)),
        ("GET", "grafana.test/ops/x", OFFICE, &carol, "allow", use_(3)),
        ("GET", "grafana.test/ops/x", OFFICE, &alice, "denied", use_(4)),
        ("GET", "grafana.test/ops/x", OFFICE, &none, "unauthenticated", use_(3)),
        // subject: a flat list is AND
        ("GET", "grafana.test/both/x", OFFICE, &dave, "allow", use_(8)),
        ("GET", "grafana.test/both/x", OFFICE, &ops, "denied", use_(9)),
        ("GET", "grafana.test/both/x", OFFICE, &carol, "denied", use_(9)),
        // methods, case-insensitive in the file
        ("POST", "grafana.test/write", OFFICE, &alice, "denied", use_(5)),
        ("PUT", "grafana.test/write", OFFICE, &alice, "denied", use_(5)),
        ("GET", "grafana.test/write", OFFICE, &alice, "allow", use_(10)),
        // query: equal, present, decoded, OR between lists
        ("GET", "grafana.test/report?format=csv", OFFICE, &alice, "denied", use_(6)),
        ("GET", "grafana.test/report?format=cs%76", OFFICE, &alice, "denied", use_(6)),
        ("GET", "grafana.test/report?a=1&format=pdf&format=csv", OFFICE, &alice, "denied", use_(6)),
        ("GET", "grafana.test/report?debug", OFFICE, &alice, "denied", use_(6)),
        ("GET", "grafana.test/report?format=pdf", OFFICE, &alice, "allow", use_(10)),
        ("GET", "grafana.test/report", OFFICE, &alice, "allow", use_(10)),
        // domain_regex with networks; then the wildcard domain; then the default
        ("GET", "grafana.test/", "198.51.100.1", &alice, "allow", use_(11)),
        ("GET", "other.test/", OFFICE, &alice, "allow", use_(11)),
        ("GET", "nope.test/", OFFICE, &alice, "unknown_host", Matched::NoApp),
    ];
    for (method, url, client, headers, want, matched) in table {
        let (got, m, _) = w.ask(method, url, client, headers);
        assert_eq!(
            (got, m),
            (*want, *matched),
            "{method} {url} from {client:?}"
        );
    }
}

#[test]
fn a_default_policy_denies_what_no_rule_matches() {
    let text = RULES.replace(
        "[[apps.rules]]\ndomain = \"*.test\"",
        "[[apps.rules]]\ndomain = \"*.example\"",
    );
    let w = world(&text);
    let alice = w.signed_in("alice", &[], Factors::PASSWORD.with(Factors::EMAIL));
    assert_eq!(
        w.ask("GET", "other.test/", OFFICE, &alice).0,
        "denied",
        "no rule matches other.test"
    );
    assert_eq!(
        w.ask("GET", "other.test/", OFFICE, &alice).1,
        Matched::Default
    );
}

#[test]
fn two_factor_and_factors_send_a_short_session_to_step_up() {
    let w = world(RULES);
    let pw = w.signed_in("alice", &[], Factors::PASSWORD);
    let (d, m, wanted) = w.ask("GET", "grafana.test/admin", OFFICE, &pw);
    assert_eq!((d, m), ("step_up", Matched::Rule(1)));
    assert_eq!(wanted, vec![Wanted::SecondFactor]);
    let (d, _, wanted) = w.ask("GET", "grafana.test/mail/inbox", OFFICE, &pw);
    assert_eq!(d, "step_up");
    assert_eq!(wanted, vec![Wanted::Factors(Factors::EMAIL)]);
    let both = w.signed_in("alice", &[], Factors::PASSWORD.with(Factors::EMAIL));
    assert_eq!(
        w.ask("GET", "grafana.test/mail/inbox", OFFICE, &both).0,
        "allow"
    );
    // SMS is a second factor too, but not the email the rule names.
    let sms = w.signed_in("alice", &[], Factors::PASSWORD.with(Factors::SMS));
    assert_eq!(w.ask("GET", "grafana.test/admin", OFFICE, &sms).0, "allow");
    assert_eq!(
        w.ask("GET", "grafana.test/mail/x", OFFICE, &sms).0,
        "step_up"
    );
}

#[test]
fn max_age_sends_a_stale_session_to_step_up_and_a_fresh_one_through() {
    let w = world(RULES);
    let two = Factors::PASSWORD.with(Factors::EMAIL);
    let alice = w.signed_in("alice", &[], two);
    assert_eq!(
        w.ask("GET", "grafana.test/admin", OFFICE, &alice).0,
        "allow"
    );
    w.clock.advance_secs(600);
    assert_eq!(
        w.ask("GET", "grafana.test/admin", OFFICE, &alice).0,
        "allow",
        "exactly ten minutes is still within"
    );
    w.clock.advance(Duration::from_millis(1));
    let (d, m, wanted) = w.ask("GET", "grafana.test/admin", OFFICE, &alice);
    assert_eq!((d, m), ("step_up", Matched::Rule(1)));
    assert_eq!(wanted, vec![Wanted::Fresh(Duration::from_secs(600))]);
    // Other paths have no max_age: the same session still opens them.
    assert_eq!(w.ask("GET", "grafana.test/dash", OFFICE, &alice).0, "allow");
    // The session a re-authentication issues is fresh again.
    let again = w.signed_in("alice", &[], two);
    assert_eq!(
        w.ask("GET", "grafana.test/admin", OFFICE, &again).0,
        "allow"
    );
}

#[test]
fn a_stale_session_starting_its_flow_again_is_asked_every_factor() {
    let w = world(RULES);
    let token = w.signed_in("alice", &["ops"], Factors::PASSWORD.with(Factors::EMAIL));
    let claims = w.gate.session(&token).expect("session");
    assert!(
        w.gate.reauthentication("f", &claims).is_none(),
        "fresh: an ordinary step-up"
    );
    w.clock.advance_secs(601);
    let bare = w
        .gate
        .reauthentication("f", &claims)
        .expect("older than the flow's shortest max_age: re-authenticate");
    assert_eq!(bare.sub, "alice");
    assert_eq!(bare.proved(), Factors::NONE);
    assert_eq!(bare.amr, vec!["identification".to_string()]);
    // A session that lacks a factor of the flow gets an ordinary step-up, stale or not.
    let pw = w.gate.session(&w.signed_in("bob", &[], Factors::PASSWORD));
    w.clock.advance_secs(601);
    assert!(w
        .gate
        .reauthentication("f", &pw.expect("session"))
        .is_none());
    // A flow no max_age names is never a re-authentication.
    let plain = world(&RULES.replace("max_age = \"10m\"\n", ""));
    let c = plain
        .gate
        .session(&plain.signed_in("alice", &[], Factors::PASSWORD.with(Factors::EMAIL)))
        .expect("session");
    plain.clock.advance_secs(86_000);
    assert!(plain.gate.reauthentication("f", &c).is_none());
}

#[test]
fn bent_paths_never_widen_a_bypass_rule_and_are_judged_as_resolved() {
    let w = world(RULES);
    let none = HeaderMap::new();
    for bent in [
        "/api/..%2fadmin",
        "/api/..%2Fadmin",
        "/api/%2F../admin",
        "/api//../admin",
        "/api/%2e%2e/admin",
        "/api/.%2E/admin",
        "/api/..%5cadmin",
        "/api/..\\admin",
        "/api/..;/admin",
        "/api/x/../../admin",
        "/api/./../admin",
        "/api/%2e%2e%2fadmin",
        "//api/../admin",
    ] {
        let (d, m, _) = w.ask("GET", &format!("grafana.test{bent}"), MONITOR, &none);
        assert_eq!((d, m), ("unauthenticated", Matched::Rule(1)), "{bent}");
    }
    // Bent but still under /api/: never bypassed either, judged by the next rules.
    for bent in [
        "/api//health",
        "/api/./health",
        "/api/health;x=1",
        "/api/h%00",
    ] {
        let (d, _, _) = w.ask("GET", &format!("grafana.test{bent}"), MONITOR, &none);
        assert_ne!(d, "bypass", "{bent}");
    }
    // A deny rule catches its path however it is spelt.
    let alice = w.signed_in("alice", &[], Factors::PASSWORD.with(Factors::EMAIL));
    for bent in ["/x/../ops/y", "/%6fps/y", "//ops/y", "/ops;a/y"] {
        let (d, m, _) = w.ask("GET", &format!("grafana.test{bent}"), OFFICE, &alice);
        assert_eq!((d, m), ("denied", Matched::Rule(4)), "{bent}");
    }
}

#[test]
fn bypass_and_allowed_groups_keep_working_beside_rules() {
    let text = RULES.replace(
        "default_policy = \"deny\"",
        "default_policy = \"deny\"\nbypass = [\"^/public/\"]\nallowed_groups = [\"staff\"]",
    );
    let w = world(&text);
    let none = HeaderMap::new();
    assert_eq!(
        w.ask("GET", "grafana.test/public/x", OFFICE, &none).1,
        Matched::BypassKey
    );
    assert_eq!(
        w.ask("GET", "grafana.test/public/..%2fx", OFFICE, &none).0,
        "unauthenticated"
    );
    let two = Factors::PASSWORD.with(Factors::EMAIL);
    let outsider = w.signed_in("alice", &[], two);
    let staff = w.signed_in("sam", &["staff"], two);
    assert_eq!(
        w.ask("GET", "grafana.test/dash", OFFICE, &outsider).0,
        "forbidden"
    );
    assert_eq!(w.ask("GET", "grafana.test/dash", OFFICE, &staff).0, "allow");
}

#[test]
fn judged_paths_resolve_what_upstreams_resolve() {
    for (raw, want) in [
        ("/plain/x", "/plain/x"),
        ("/%61dmin/%C3%A9", "/admin/é"),
        ("/a/..%2fb", "/b"),
        ("/a//b/", "/a/b/"),
        ("/a/./b/../c", "/a/c"),
        ("/..", "/"),
        ("/a\\..\\b", "/b"),
        ("/a;x=1/b;y", "/a/b"),
        ("/a/%2e%2e/%62", "/b"),
        ("/a/b%00/../c", "/a/b"),
        ("/a#/../b", "/a"),
    ] {
        assert_eq!(judged_path(raw), want, "{raw}");
    }
}

fn refused(text: &str) -> ConfigError {
    match Config::from_toml(text, Path::new("t.toml"), std::iter::empty()) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e,
    }
}

#[test]
fn bad_rules_refuse_the_config_naming_the_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "resources = [\"^/admin\"]",
            "resources = [\"^/ok\", \"(\"]",
            "apps[0].rules[1].resources[1]",
            "regex",
        ),
        (
            "domain_regex = '^grafana\\.'",
            "domain_regex = '['",
            "apps[0].rules[10].domain_regex[0]",
            "regex",
        ),
        (
            "networks = [\"monitoring\"]",
            "networks = [\"10.0.0.0/33\"]",
            "apps[0].rules[0].networks[0]",
            "[networks]",
        ),
        (
            "networks = [\"monitoring\"]",
            "networks = [\"office\"]",
            "apps[0].rules[0].networks[0]",
            "office",
        ),
        (
            "monitoring = [\"10.1.0.0/16\", \"fd00:1::/32\"]",
            "monitoring = [\"ten\"]",
            "networks.monitoring[0]",
            "ten",
        ),
        (
            "subject = [[\"group:ops\"], [\"user:carol\"]]",
            "subject = [[\"group:ops\"], [\"role:x\"]]",
            "apps[0].rules[3].subject[1][0]",
            "role:x",
        ),
        (
            "policy = \"two_factor\"",
            "policy = \"admin\"",
            "apps[0].rules[1].policy",
            "admin",
        ),
        (
            "max_age = \"10m\"",
            "max_age = \"soon\"",
            "apps[0].rules[1].max_age",
            "soon",
        ),
        (
            "factors = [\"email\"]",
            "factors = [\"sms\"]",
            "apps[0].rules[7].factors[0]",
            "sms",
        ),
        (
            "factors = [\"email\"]",
            "factors = [\"webauthn\"]",
            "apps[0].rules[7].factors[0]",
            "webauthn",
        ),
        (
            "methods = [\"post\", \"PUT\"]",
            "methods = [\"GET /\"]",
            "apps[0].rules[5].methods[0]",
            "GET /",
        ),
        (
            "{ key = \"debug\", operator = \"present\" }",
            "{ key = \"debug\", operator = \"like\" }",
            "apps[0].rules[6].query[1][0].operator",
            "like",
        ),
        (
            "{ key = \"debug\", operator = \"present\" }",
            "{ key = \"debug\", operator = \"pattern\", value = \"(\" }",
            "apps[0].rules[6].query[1][0].value",
            "regex",
        ),
        (
            "default_policy = \"deny\"",
            "default_policy = \"open\"",
            "apps[0].default_policy",
            "open",
        ),
        (
            "domain = \"alt.test\"",
            "domain = \"https://alt.test\"",
            "apps[0].rules[2].domain[0]",
            "alt.test",
        ),
        (
            "resources = [\"^/api/\"]\nnetworks",
            "subject = \"user:x\"\nresources = [\"^/api/\"]\nnetworks",
            "apps[0].rules[0].subject",
            "bypass",
        ),
        (
            "policy = \"deny\"\n\n[[apps.rules]]\nresources = \"^/ops/\"",
            "policy = \"deny\"\nmax_age = \"1m\"\n\n[[apps.rules]]\nresources = \"^/ops/\"",
            "apps[0].rules[2]",
            "max_age",
        ),
        (
            "stages = [\"id\", \"pw\", \"mfa\", \"login\"]",
            "stages = [\"id\", \"pw\", \"login\"]",
            "apps[0].rules[1].policy",
            "two factors",
        ),
    ];
    for (from, to, key, says) in cases {
        assert!(RULES.contains(from), "{from}");
        let e = refused(&RULES.replacen(from, to, 1));
        assert_eq!(e.path(), Some(*key), "{to}: {e}");
        assert!(e.to_string().contains(says), "{to}: {e}");
    }
    let e = refused(&RULES.replacen("policy = \"bypass\"", "policy = \"bypass\"\nbogus = 1", 1));
    assert!(e.to_string().contains("bogus"), "{e}");
}

#[test]
fn an_app_without_rules_keeps_todays_one_factor_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = super::tests::gate(dir.path());
    let app = gate.app("wiki.test").expect("app");
    assert_eq!(app.access.default_policy, Policy::OneFactor);
    assert!(app.access.rules.is_empty());
}

/// The path index only narrows: every rule whose `resources` match a path (or that has none)
/// is among the candidates for it, whatever the patterns look like.
#[test]
fn the_path_index_never_hides_a_rule_that_matches() {
    let mut text = String::from(RULES);
    for (j, pattern) in [
        "^/api?/x",
        "^/a.min",
        "^",
        "/x$",
        "^/(a|b)/",
        "^/r[0-9]+/",
        "^/caf\u{e9}/",
        "^/re\\.port",
        "^/a*b",
        "(?i)^/ADMIN",
        "^/admin|^/x",
    ]
    .iter()
    .enumerate()
    {
        let pattern = pattern.replace('\\', "\\\\");
        text.push_str(&format!(
            "\n[[apps.rules]]\nresources = [\"{pattern}\", \"^/n{j}/\"]\npolicy = \"deny\"\n"
        ));
    }
    let w = world(&text);
    let rules = &w.gate.config().apps[0].access;
    let index = rules.index.as_ref().expect("indexed");
    let paths = [
        "/", "", "/api/x", "/ap/x", "/admin", "/aXmin", "/ADMIN", "/admin/x", "/x", "/a/x", "/b/",
        "/r12/", "/r/", "/café/", "/re.port", "/report", "/b", "/aaab", "/n3/", "/n10/", "/write",
        "/ops/", "/mail/", "/zzz",
    ];
    for path in paths {
        let c = index.candidates(path);
        for (j, rule) in rules.rules.iter().enumerate() {
            let could = rule.resources.as_ref().is_none_or(|r| r.is_match(path));
            assert!(
                !could || c.contains(j),
                "rule {j} ({}) hidden for {path:?}",
                rule.summary
            );
        }
    }
}

/// A passkey sign-in skips the flow's password stage, so a rule asking for `password` takes
/// the passkey instead (a step-up could never add the password: the user would loop).
#[test]
fn a_passkey_session_meets_a_rule_that_names_the_password() {
    // First, ahead of the table's catch-all rules.
    let text = RULES.replacen(
        "default_policy = \"deny\"\n",
        "default_policy = \"deny\"\n\n[[apps.rules]]\nresources = [\"^/pw/\"]\nfactors = [\"password\"]\npolicy = \"one_factor\"\n",
        1,
    );
    assert_ne!(text, RULES);
    let w = world(&text);
    let passkey = w.signed_in_by(
        "alice",
        &[],
        Factors::PASSKEY.with(Factors::WEBAUTHN),
        &["identification", "authenticator_webauthn"],
    );
    assert_eq!(
        w.ask("GET", "grafana.test/pw/x", OFFICE, &passkey).0,
        "allow"
    );
    let email = w.signed_in_by(
        "alice",
        &[],
        Factors::EMAIL,
        &["identification", "authenticator_email"],
    );
    let (d, _, wanted) = w.ask("GET", "grafana.test/pw/x", OFFICE, &email);
    assert_eq!(d, "step_up");
    assert_eq!(wanted, vec![Wanted::Factors(Factors::PASSWORD)]);
}

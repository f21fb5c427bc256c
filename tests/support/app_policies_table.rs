//! One table of policies bound to apps, run in proxy mode (tests/e2e/app_policies.rs) and
//! through the forward-auth endpoints (tests/forward_auth/app_policies.rs): the same
//! policies must give the same answers, with the same messages, whichever way a request
//! reaches the gateway.
#![allow(dead_code)]

pub use crate::rules_table::{seen, Seen, Who};

/// The GeoLite2 test database (see tests/data/README.md).
pub fn geoip_db() -> String {
    format!(
        "{}/tests/data/GeoLite2-Country-Test.mmdb",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Each app binds policies one way.
pub const ADMINS: &str = "admins.policy.test";
pub const ANY: &str = "any.policy.test";
pub const ALL: &str = "all.policy.test";
pub const NEGATED: &str = "neg.policy.test";
pub const UK: &str = "uk.policy.test";
pub const BROKEN: &str = "broken.policy.test";
pub const PATHS: &str = "paths.policy.test";

/// Every host of the table.
pub const HOSTS: [&str; 7] = [ADMINS, ANY, ALL, NEGATED, UK, BROKEN, PATHS];

/// `[geoip]`, `[policies]` and one app per way of binding; `upstream` and `flow` as the
/// suite's. The client address policies see is the one the gateway trusts: loopback peers
/// are trusted proxies by default, so `X-Forwarded-For` names it.
pub fn app_policies_toml(upstream: &str, flow: &str) -> String {
    let mut out = format!(
        r#"
[geoip]
database = "{db}"

[policies.admins]
kind = "expression"
expression = "'admins' in user.groups"
message = "Admins only."

[policies.admins_here]
kind = "expression"
expression = "'admins' in user.groups"
message = "Not for admins."

[policies.lab]
kind = "network"
cidrs = ["10.0.0.0/8"]
message = "From the lab only."

[policies.uk]
kind = "expression"
expression = "request.country in ['GB']"
message = "Only from the United Kingdom."

[policies.broken]
kind = "expression"
expression = "user.attributes.nope == 'x'"
message = "This application is closed for now."

[policies.not_secret]
kind = "expression"
expression = "!request.path.startsWith('/secret')"
message = "Not this page."
"#,
        db = geoip_db()
    );
    let apps: [(&str, &str); 7] = [
        (ADMINS, "policies = [\"admins\"]\nbypass = [\"^/public/\"]"),
        (
            ANY,
            "policies = [\"lab\", \"admins\"]\npolicy_engine_mode = \"any\"",
        ),
        (
            ALL,
            "policies = [\"lab\", \"admins\"]\npolicy_engine_mode = \"all\"",
        ),
        (NEGATED, "policies = [\"admins_here\"]\nnegate = true"),
        (UK, "policies = [\"uk\"]"),
        (BROKEN, "policies = [\"broken\"]"),
        (PATHS, "policies = [\"not_secret\"]"),
    ];
    for (i, (host, keys)) in apps.iter().enumerate() {
        out.push_str(&format!(
            "\n[[apps]]\nname = \"policy{i}\"\nhosts = [\"{host}\"]\nupstream = \"{upstream}\"\nflow = \"{flow}\"\n{keys}\n"
        ));
    }
    out
}

/// host, path, who (`Admin` is in `admins`), the client address (`X-Forwarded-For`), what is
/// seen, and the message a refusal shows.
pub type Case = (
    &'static str,
    &'static str,
    Who,
    &'static str,
    Seen,
    Option<&'static str>,
);

const OUT: &str = "203.0.113.7";
const LAB: &str = "10.1.1.1";

pub const CASES: &[Case] = &[
    // one policy
    (ADMINS, "/x", Who::Admin, OUT, Seen::Passes, None),
    (
        ADMINS,
        "/x",
        Who::Staff,
        OUT,
        Seen::Denied,
        Some("Admins only."),
    ),
    // a request without a session goes to sign-in first; a bypass is never judged
    (ADMINS, "/x", Who::Anonymous, OUT, Seen::SignIn, None),
    (ADMINS, "/public/x", Who::Anonymous, OUT, Seen::Passes, None),
    (ADMINS, "/public/x", Who::Staff, OUT, Seen::Passes, None),
    // any: one passing policy is enough
    (ANY, "/x", Who::Staff, LAB, Seen::Passes, None),
    (ANY, "/x", Who::Admin, OUT, Seen::Passes, None),
    (
        ANY,
        "/x",
        Who::Staff,
        OUT,
        Seen::Denied,
        Some("From the lab only. Admins only."),
    ),
    // all: every policy must pass
    (ALL, "/x", Who::Admin, LAB, Seen::Passes, None),
    (
        ALL,
        "/x",
        Who::Admin,
        OUT,
        Seen::Denied,
        Some("From the lab only."),
    ),
    (
        ALL,
        "/x",
        Who::Staff,
        LAB,
        Seen::Denied,
        Some("Admins only."),
    ),
    // negate: the passing policy refuses, with its message
    (NEGATED, "/x", Who::Staff, OUT, Seen::Passes, None),
    (
        NEGATED,
        "/x",
        Who::Admin,
        OUT,
        Seen::Denied,
        Some("Not for admins."),
    ),
    // request.country from the GeoIP database, for the address the gateway trusts
    (UK, "/x", Who::Staff, "81.2.69.142", Seen::Passes, None),
    (
        UK,
        "/x",
        Who::Staff,
        "89.160.20.112",
        Seen::Denied,
        Some("Only from the United Kingdom."),
    ),
    (
        UK,
        "/x",
        Who::Staff,
        "127.0.0.1",
        Seen::Denied,
        Some("Only from the United Kingdom."),
    ),
    // a policy that errors denies, with its message
    (
        BROKEN,
        "/x",
        Who::Admin,
        OUT,
        Seen::Denied,
        Some("This application is closed for now."),
    ),
    // request.path is the normalised path: bent spellings do not slip past
    (PATHS, "/ok", Who::Staff, OUT, Seen::Passes, None),
    (
        PATHS,
        "/secret/x",
        Who::Staff,
        OUT,
        Seen::Denied,
        Some("Not this page."),
    ),
    (
        PATHS,
        "/x/../secret/x",
        Who::Staff,
        OUT,
        Seen::Denied,
        Some("Not this page."),
    ),
    (
        PATHS,
        "/%73ecret/x",
        Who::Staff,
        OUT,
        Seen::Denied,
        Some("Not this page."),
    ),
    (
        PATHS,
        "//secret/x",
        Who::Staff,
        OUT,
        Seen::Denied,
        Some("Not this page."),
    ),
    (
        PATHS,
        "/x/..%2fsecret/x",
        Who::Staff,
        OUT,
        Seen::Denied,
        Some("Not this page."),
    ),
];

use super::*;
use std::collections::BTreeMap;

fn expr(name: &str, source: &str, message: Option<&str>) -> Arc<Policy> {
    Arc::new(Policy {
        name: name.into(),
        message: message.map(str::to_string),
        kind: PolicyKind::Expression(
            Expression::compile(source).unwrap_or_else(|e| panic!("{source}: {e}")),
        ),
    })
}

fn facts(ip: &str, phone: Option<&str>) -> Facts {
    let mut prompt_data = BTreeMap::new();
    if let Some(p) = phone {
        prompt_data.insert("phone".to_string(), p.to_string());
    }
    Facts {
        user: Some(UserFacts {
            username: "alice".into(),
            groups: vec!["staff".into()],
            is_active: true,
            ..Default::default()
        }),
        request: RequestFacts {
            ip: ip.into(),
            ..Default::default()
        },
        flow: FlowFacts {
            slug: "login".into(),
            prompt_data,
            ..Default::default()
        },
        now: 1_700_000_000,
        failures: Failures::default(),
    }
}

fn binding(policies: Vec<Arc<Policy>>, mode: Mode, negate: bool) -> Binding {
    Binding {
        policies,
        mode,
        negate,
    }
}

type Expect = fn(&PolicyError) -> bool;

#[test]
fn compile_refuses_what_cannot_run() {
    let cases: &[(&str, Expect)] = &[
        ("user.username ==", |e| matches!(e, PolicyError::Syntax(_))),
        ("usr.username == 'a'", |e| {
            *e == PolicyError::UnknownVariable("usr".into())
        }),
        ("secret", |e| {
            *e == PolicyError::UnknownVariable("secret".into())
        }),
        // A comprehension's variable is only bound inside it.
        ("user.groups.exists(g, g == 'x') && g == 'y'", |e| {
            *e == PolicyError::UnknownVariable("g".into())
        }),
        ("[1].all(a, [1].all(b, [1].all(c, true)))", |e| {
            matches!(e, PolicyError::TooLarge(_))
        }),
    ];
    for (source, ok) in cases {
        match Expression::compile(source) {
            Ok(_) => panic!("{source} compiled"),
            Err(e) => assert!(ok(&e), "{source}: {e:?}"),
        }
    }
    let long = format!("'{}' == ''", "a".repeat(MAX_EXPRESSION_BYTES));
    assert!(matches!(
        Expression::compile(&long),
        Err(PolicyError::TooLarge(_))
    ));
    let many = vec!["true"; 600].join(" && ");
    assert!(matches!(
        Expression::compile(&many),
        Err(PolicyError::TooLarge(_))
    ));
}

#[test]
fn compile_accepts_the_documented_context() {
    for source in [
        "user.groups.exists(g, g == 'staff')",
        "request.ip.startsWith('10.') || request.headers['x-team'] == 'ops'",
        "'phone' in flow.prompt_data && flow.prompt_data.phone.startsWith('+1234')",
        "time.now > 0 && flow.stages_passed.size() >= 0 && user.is_active",
    ] {
        assert!(Expression::compile(source).is_ok(), "{source}");
    }
}

#[tokio::test]
async fn phone_prefix_expression_passes_only_its_prefix() {
    let p = expr(
        "phone_prefix",
        "'phone' in flow.prompt_data && flow.prompt_data.phone.startsWith('+1234')",
        Some("Only +1234 numbers."),
    );
    let judge = Evaluator::default();
    let b = binding(vec![p], Mode::All, false);
    for (phone, passes) in [
        (Some("+12345678"), true),
        (Some("+4912345"), false),
        (Some(" +1234"), false),
        (None, false),
    ] {
        let v = judge.judge(&b, &facts("192.0.2.1", phone)).await;
        assert_eq!(v.passed, passes, "{phone:?}");
        if !passes {
            assert_eq!(v.messages, vec!["Only +1234 numbers.".to_string()]);
        }
    }
}

#[tokio::test]
async fn an_erroring_expression_denies_even_negated_or_in_any_mode() {
    let judge = Evaluator::default();
    let bad = expr("bad", "int(request.ip) > 0", Some("Nope."));
    let not_bool = expr("not_bool", "user.username", None);
    let yes = expr("yes", "true", None);
    let f = facts("192.0.2.1", None);
    for b in [
        binding(vec![bad.clone()], Mode::All, false),
        binding(vec![bad.clone()], Mode::All, true),
        binding(vec![bad.clone(), yes.clone()], Mode::Any, false),
        binding(vec![not_bool.clone()], Mode::All, false),
    ] {
        let v = judge.judge(&b, &f).await;
        assert!(!v.passed, "{:?}", v.outcomes);
        assert!(v.outcomes.iter().any(|(_, o)| *o == Outcome::Error));
    }
}

#[tokio::test]
async fn an_expression_over_its_time_bound_denies() {
    let judge = Evaluator::new(Duration::ZERO);
    let b = binding(vec![expr("slow", "true", None)], Mode::All, false);
    let v = judge.judge(&b, &facts("192.0.2.1", None)).await;
    assert!(!v.passed);
    assert_eq!(v.outcomes, vec![("slow".to_string(), Outcome::Error)]);
    assert_eq!(v.messages, vec![DENIED.to_string()]);
}

#[tokio::test]
async fn modes_and_negation_combine_as_documented() {
    let judge = Evaluator::default();
    let yes = expr("yes", "true", Some("yes said no"));
    let no = expr("no", "false", Some("no said no"));
    let f = facts("192.0.2.1", None);
    let cases = [
        (vec![yes.clone(), no.clone()], Mode::All, false, false),
        (vec![yes.clone(), no.clone()], Mode::Any, false, true),
        (vec![yes.clone(), no.clone()], Mode::All, true, true),
        (vec![yes.clone(), no.clone()], Mode::Any, true, false),
        (vec![no.clone()], Mode::Any, false, false),
        (vec![], Mode::All, false, true),
    ];
    for (policies, mode, negate, passes) in cases {
        let v = judge.judge(&binding(policies, mode, negate), &f).await;
        assert_eq!(v.passed, passes, "{mode:?} negate={negate}: {v:?}");
    }
    let v = judge
        .judge(
            &binding(vec![yes.clone(), no.clone()], Mode::All, false),
            &f,
        )
        .await;
    assert_eq!(v.messages, vec!["no said no".to_string()]);
    let v = judge
        .judge(&binding(vec![yes, no], Mode::Any, true), &f)
        .await;
    assert_eq!(v.messages, vec!["yes said no".to_string()]);
}

#[tokio::test]
async fn network_policy_matches_client_addresses() {
    let nets = vec![
        "10.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}")),
        "2001:db8::/32".parse().unwrap_or_else(|e| panic!("{e}")),
    ];
    let p = Arc::new(Policy {
        name: "office".into(),
        message: None,
        kind: PolicyKind::Network(nets),
    });
    let judge = Evaluator::default();
    let b = binding(vec![p], Mode::All, false);
    for (ip, outcome) in [
        ("10.1.2.3", Outcome::Pass),
        ("::ffff:10.1.2.3", Outcome::Pass),
        ("2001:db8::1", Outcome::Pass),
        ("11.0.0.1", Outcome::Fail),
        ("192.0.2.1", Outcome::Fail),
        ("10.1.2.3:443", Outcome::Error),
        ("", Outcome::Error),
    ] {
        let v = judge.judge(&b, &facts(ip, None)).await;
        assert_eq!(v.outcomes[0].1, outcome, "{ip}");
    }
}

/// Sources of the allowed size built to recurse as deep as they can: each is refused, or
/// compiles to a tree shallow enough to run; none overflows a stack (which would abort).
#[tokio::test]
async fn deeply_nested_sources_neither_overflow_the_parser_nor_the_interpreter() {
    let f = facts("192.0.2.1", None);
    let mut sources = Vec::new();
    for (open, close) in [("[", "]"), ("!", ""), ("-", ""), ("{1:", "}"), ("(", ")")] {
        sources.push(format!("{}1{}", open.repeat(1000), close.repeat(1000)));
    }
    for op in ["+", "&&", "||", "==", "."] {
        let operand = if op == "." { "user" } else { "1" };
        let n = (MAX_EXPRESSION_BYTES - 16) / (operand.len() + op.len());
        sources.push(vec![operand; n].join(op));
    }
    sources.push("true ? 1 : ".repeat(MAX_EXPRESSION_BYTES / 12) + "0");
    for source in &sources {
        if let Ok(e) = Expression::compile(source) {
            let _ = e.evaluate(&f, "", DEFAULT_TIME_LIMIT).await;
        }
    }
    let nested = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let refused = Expression::compile(&nested);
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn password_policy_counts_each_rule_over_the_prompt_answer() {
    let rules = PasswordRules {
        field: "new_password".into(),
        length_min: 10,
        amount_uppercase: 1,
        amount_lowercase: 1,
        amount_digits: 2,
        amount_symbols: 1,
        check_static_rules: true,
        ..Default::default()
    };
    let p = Arc::new(Policy {
        name: "strong".into(),
        message: Some("Too weak.".into()),
        kind: PolicyKind::Password(rules),
    });
    let judge = Evaluator::default();
    let b = binding(vec![p], Mode::All, false);
    for (password, passes) in [
        (Some("Correct-Horse-42"), true),
        (Some("Ünïcödé-42x"), true),
        (Some("Short-4x2"), false),
        (Some("no-upper-case-42"), false),
        (Some("NO-LOWER-CASE-42"), false),
        (Some("One-Digit-only-4"), false),
        (Some("NoSymbolsHere42"), false),
        (Some("Spaces Are Not 42"), false),
        (None, false),
    ] {
        let mut f = facts("192.0.2.1", None);
        if let Some(p) = password {
            f.flow.prompt_data.insert("new_password".into(), p.into());
        }
        let v = judge.judge(&b, &f).await;
        assert_eq!(v.passed, passes, "{password:?}");
    }
}

#[tokio::test]
async fn reputation_policy_fails_at_its_threshold_for_what_it_checks() {
    let judge = Evaluator::default();
    let rep = |check_ip, check_username| {
        Arc::new(Policy {
            name: "rep".into(),
            message: None,
            kind: PolicyKind::Reputation {
                check_ip,
                check_username,
                threshold: 3,
            },
        })
    };
    for (ip, user, check_ip, check_username, passes) in [
        (0, 0, true, true, true),
        (2, 2, true, true, true),
        (3, 0, true, true, false),
        (0, 3, true, true, false),
        (3, 0, false, true, true),
        (0, 3, true, false, true),
    ] {
        let mut f = facts("192.0.2.1", None);
        f.failures = Failures { ip, user };
        let b = binding(vec![rep(check_ip, check_username)], Mode::All, false);
        let v = judge.judge(&b, &f).await;
        assert_eq!(v.passed, passes, "{ip} {user} {check_ip} {check_username}");
    }
}

/// Sources as deep as the load-time bound allows run inline (as the access decision runs
/// them) on a thread with an eighth of a worker's 2 MiB stack: none overflows it.
#[test]
fn the_deepest_programs_run_inline_on_a_small_stack() {
    let mut sources = Vec::new();
    for (open, close) in [("[", "]"), ("!", ""), ("-", ""), ("{1:", "}"), ("(", ")")] {
        for n in [20, 40, 47, 48, 100] {
            sources.push(format!("{}1{}", open.repeat(n), close.repeat(n)));
        }
    }
    for op in ["+", "&&", "||", "==", "."] {
        let operand = if op == "." { "user" } else { "1" };
        for n in [10, 40, 47, 48, 49] {
            sources.push(vec![operand; n].join(op));
        }
    }
    for n in [10, 40, 47, 48, 49] {
        sources.push("true ? 1 : ".repeat(n) + "0");
    }
    sources.push("user.groups.exists(g, user.groups.exists(h, g + h == 'ab'))".into());
    let programs: Vec<Expression> = sources
        .iter()
        .filter_map(|s| Expression::compile(s).ok())
        .collect();
    assert!(programs.len() > 20, "{}", programs.len());
    let f = facts("192.0.2.1", None);
    let ran = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            for p in &programs {
                let _ = p.evaluate_inline(&f, "", DEFAULT_TIME_LIMIT);
            }
            programs.len()
        })
        .unwrap_or_else(|e| panic!("{e}"))
        .join();
    assert!(ran.is_ok());
}

#[test]
fn reads_country_is_decided_from_the_tree() {
    for (source, reads) in [
        ("request.country == 'GB'", true),
        ("request.country in ['GB', 'SE']", true),
        ("has(request.country)", true),
        ("request['country'] == 'GB'", true),
        ("'country' in request", true),
        (
            "request.ip == '1.2.3.4' && request.path.startsWith('/a')",
            false,
        ),
        ("user != null && 'staff' in user.groups", false),
        (
            "[1].exists(request, request == 1) && request.ip == ''",
            false,
        ),
    ] {
        let e = Expression::compile(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        assert_eq!(e.reads_country(), reads, "{source}");
    }
}

fn geoip() -> Arc<GeoIp> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/GeoLite2-Country-Test.mmdb");
    Arc::new(GeoIp::open(&path).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn geoip_gives_iso_codes_and_nothing_for_unknown_addresses() {
    let db = geoip();
    for (ip, code) in [
        ("81.2.69.142", "GB"),
        ("89.160.20.112", "SE"),
        ("67.43.156.1", "BT"),
        ("50.114.0.1", "US"),
        ("::ffff:81.2.69.142", "GB"),
        ("127.0.0.1", ""),
        ("10.1.2.3", ""),
        ("not an address", ""),
        ("", ""),
    ] {
        assert_eq!(db.country(ip), code, "{ip}");
    }
    let bad = std::env::temp_dir().join(format!("not-a-db-{}.mmdb", std::process::id()));
    std::fs::write(&bad, b"hello").unwrap_or_else(|e| panic!("{e}"));
    assert!(GeoIp::open(&bad).is_err());
    let _ = std::fs::remove_file(&bad);
    assert!(GeoIp::open(std::path::Path::new("/nonexistent/x.mmdb")).is_err());
}

#[tokio::test]
async fn request_country_is_looked_up_for_policies_that_read_it_in_both_evaluators() {
    let judge = Evaluator::default().with_geoip(Some(geoip()));
    let b = binding(
        vec![expr("uk", "request.country in ['GB']", Some("UK only."))],
        Mode::All,
        false,
    );
    for (ip, passes) in [
        ("81.2.69.142", true),
        ("89.160.20.112", false),
        ("127.0.0.1", false),
    ] {
        let f = facts(ip, None);
        assert_eq!(judge.judge(&b, &f).await.passed, passes, "{ip}");
        let v = judge.judge_inline(&b, &f);
        assert_eq!(v.passed, passes, "{ip}");
        if !passes {
            assert_eq!(v.messages, vec!["UK only.".to_string()]);
        }
    }
    // Without a database the country is empty.
    let none = Evaluator::default();
    assert!(!none.judge_inline(&b, &facts("81.2.69.142", None)).passed);
}

#[test]
fn inline_judging_combines_modes_and_negation_and_errors_deny() {
    let judge = Evaluator::default();
    let yes = expr("yes", "true", Some("yes said no"));
    let no = expr("no", "false", Some("no said no"));
    let bad = expr("bad", "user.nope == 1", Some("broken"));
    let f = facts("192.0.2.1", None);
    let cases = [
        (vec![yes.clone(), no.clone()], Mode::All, false, false),
        (vec![yes.clone(), no.clone()], Mode::Any, false, true),
        (vec![yes.clone(), no.clone()], Mode::All, true, true),
        (vec![yes.clone(), no.clone()], Mode::Any, true, false),
        (vec![bad.clone(), yes.clone()], Mode::Any, false, false),
        (vec![bad.clone()], Mode::All, true, false),
    ];
    for (policies, mode, negate, passes) in cases {
        let v = judge.judge_inline(&binding(policies, mode, negate), &f);
        assert_eq!(v.passed, passes, "{mode:?} negate={negate}: {v:?}");
    }
    let v = judge.judge_inline(&binding(vec![bad], Mode::All, false), &f);
    assert_eq!(v.outcomes[0].1, Outcome::Error);
    assert_eq!(v.messages, vec!["broken".to_string()]);
}

#[test]
fn an_inline_run_over_its_time_bound_denies() {
    let judge = Evaluator::new(Duration::ZERO);
    let b = binding(
        vec![expr("slow", "true", Some("Too slow."))],
        Mode::Any,
        true,
    );
    let v = judge.judge_inline(&b, &facts("192.0.2.1", None));
    assert!(!v.passed);
    assert_eq!(v.outcomes, vec![("slow".to_string(), Outcome::Error)]);
    assert_eq!(v.messages, vec!["Too slow.".to_string()]);
}

fn password_policy(message: Option<&str>, rules: PasswordRules) -> Arc<Policy> {
    Arc::new(Policy {
        name: "pw".into(),
        message: message.map(str::to_string),
        kind: PolicyKind::Password(rules),
    })
}

async fn judge_password(policy: &Arc<Policy>, password: &str, user: Option<UserFacts>) -> Verdict {
    let mut f = facts("192.0.2.1", None);
    f.user = user;
    f.flow
        .prompt_data
        .insert("password".into(), password.to_string());
    let b = binding(vec![policy.clone()], Mode::All, false);
    Evaluator::default().judge(&b, &f).await
}

fn zxcvbn_rules(threshold: u8) -> PasswordRules {
    PasswordRules {
        field: "password".into(),
        check_static_rules: true,
        zxcvbn_score_threshold: Some(threshold),
        ..Default::default()
    }
}

#[tokio::test]
async fn zxcvbn_refuses_a_weak_password_saying_so_and_accepts_a_strong_one() {
    let p = password_policy(None, zxcvbn_rules(2));
    for weak in ["password1", "qwerty123", "aaaaaaaaaaaa", "Summer2024"] {
        let v = judge_password(&p, weak, None).await;
        assert!(!v.passed, "{weak} passed");
        assert_eq!(v.messages[0], TOO_WEAK, "{weak}: {:?}", v.messages);
    }
    for strong in ["correct-horse-battery-staple-91", "vX9#qL2!mR7@tZ4&"] {
        let v = judge_password(&p, strong, None).await;
        assert!(v.passed, "{strong} refused: {:?}", v.messages);
    }
    // With a message, the user sees it first, then zxcvbn's advice.
    let p = password_policy(Some("Choose a stronger password."), zxcvbn_rules(2));
    let v = judge_password(&p, "password1", None).await;
    assert_eq!(
        v.messages[0], "Choose a stronger password.",
        "{:?}",
        v.messages
    );
    assert!(v.messages.len() > 1, "no advice: {:?}", v.messages);
    assert!(
        !v.messages.iter().any(|m| m == TOO_WEAK),
        "{:?}",
        v.messages
    );
}

#[tokio::test]
async fn zxcvbn_counts_the_users_own_names_as_guessable() {
    let p = password_policy(None, zxcvbn_rules(2));
    let pw = "Wilhelmina.Zabrowski";
    let v = judge_password(&p, pw, None).await;
    assert!(v.passed, "refused without user inputs: {:?}", v.messages);
    let user = UserFacts {
        username: "wzabrowski".into(),
        name: "Wilhelmina Zabrowski".into(),
        email: "wilhelmina.zabrowski@example.com".into(),
        ..Default::default()
    };
    let v = judge_password(&p, pw, Some(user)).await;
    assert!(!v.passed, "the user's own name passed");
}

/// A range folder as the HIBP downloader writes it: `PREFIX.txt`, CRLF lines `SUFFIX:COUNT`.
fn range_dir(entries: &[(&str, u64)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for (pw, n) in entries {
        let hex = sha1_upper_hex(pw);
        let (prefix, suffix) = hex.split_at(5);
        let file = files.entry(prefix.to_string()).or_default();
        // Neighbours in the same range, so the match is not the only line.
        file.push_str(&format!("0000000000000000000000000000000000A:7\r\n{suffix}:{n}\r\nFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF:2\r\n"));
    }
    for (prefix, text) in files {
        std::fs::write(dir.path().join(format!("{prefix}.txt")), text).unwrap();
    }
    dir
}

fn breached_rules(dir: &std::path::Path, allowed_count: u64) -> PasswordRules {
    PasswordRules {
        field: "password".into(),
        check_static_rules: true,
        breached: Some(BreachedList {
            dir: dir.to_path_buf(),
            allowed_count,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_breached_password_is_refused_with_its_count_and_hibp_allowed_count_is_respected() {
    let dir = range_dir(&[("hunter2-but-longer", 3), ("seen-once-only", 1)]);
    let p = password_policy(
        Some("Pick another password."),
        breached_rules(dir.path(), 0),
    );
    let v = judge_password(&p, "hunter2-but-longer", None).await;
    assert!(!v.passed);
    assert_eq!(
        v.messages,
        [
            "Pick another password.",
            "This password has appeared 3 times in data breaches; choose another."
        ]
    );
    for (allowed, pw, passes) in [
        (0, "seen-once-only", false),
        (1, "seen-once-only", true),
        (2, "hunter2-but-longer", false),
        (3, "hunter2-but-longer", true),
        // A prefix with no file, and a file without this suffix: not breached.
        (0, "never-seen-anywhere-491", true),
    ] {
        let p = password_policy(None, breached_rules(dir.path(), allowed));
        let v = judge_password(&p, pw, None).await;
        assert_eq!(
            v.passed, passes,
            "{pw} with hibp_allowed_count {allowed}: {:?}",
            v.messages
        );
    }
}

#[tokio::test]
async fn a_range_file_in_lower_case_or_with_lf_lines_still_matches() {
    let dir = tempfile::tempdir().unwrap();
    let hex = sha1_upper_hex("lower-case-list").to_ascii_lowercase();
    let (prefix, suffix) = hex.split_at(5);
    std::fs::write(
        dir.path()
            .join(format!("{}.txt", prefix.to_ascii_uppercase())),
        format!("{suffix}:12\n"),
    )
    .unwrap();
    let p = password_policy(None, breached_rules(dir.path(), 0));
    assert!(!judge_password(&p, "lower-case-list", None).await.passed);
}

#[tokio::test]
async fn an_unreadable_breach_list_fails_closed_with_a_clear_message() {
    let dir = range_dir(&[("whatever", 1)]);
    let gone = dir.path().join("moved-away");
    let p = password_policy(Some("Pick another password."), breached_rules(&gone, 0));
    let v = judge_password(&p, "a-perfectly-fine-passphrase", None).await;
    assert!(!v.passed);
    assert_eq!(v.outcomes[0].1, Outcome::Error);
    assert_eq!(v.messages, [UNCHECKED]);
    // A range file that is not one: also an error, never "not breached".
    let hex = sha1_upper_hex("garbled");
    std::fs::write(
        dir.path().join(format!("{}.txt", &hex[..5])),
        "not a range file\n",
    )
    .unwrap();
    let p = password_policy(None, breached_rules(dir.path(), 0));
    let v = judge_password(&p, "garbled", None).await;
    assert_eq!(v.outcomes[0].1, Outcome::Error);
}

#[test]
fn the_static_rules_are_described_when_the_policy_has_no_message() {
    let rules = PasswordRules {
        field: "password".into(),
        check_static_rules: true,
        length_min: 12,
        amount_digits: 1,
        amount_symbols: 2,
        ..Default::default()
    };
    assert_eq!(
        rules.check("short", &[], false),
        PasswordVerdict::Fail(vec![
            "Passwords need at least 12 characters, 1 digit, 2 symbols.".into()
        ])
    );
    assert_eq!(
        rules.check("short", &[], true),
        PasswordVerdict::Fail(vec![])
    );
    let off = PasswordRules {
        check_static_rules: false,
        ..rules
    };
    assert_eq!(off.check("short", &[], false), PasswordVerdict::Pass);
}

/// Only the range file of the password's own prefix is opened: another prefix's entry that
/// cannot be read as a file (here a folder) changes nothing.
#[tokio::test]
async fn only_the_passwords_own_range_file_is_read() {
    let dir = range_dir(&[("hunter2-but-longer", 3)]);
    let mine = &sha1_upper_hex("a-different-passphrase-77")[..5];
    for prefix in ["00000", "FFFFF", "7A3C1"] {
        if prefix != mine {
            std::fs::create_dir(dir.path().join(format!("{prefix}.txt"))).unwrap();
        }
    }
    let p = password_policy(None, breached_rules(dir.path(), 0));
    let v = judge_password(&p, "a-different-passphrase-77", None).await;
    assert!(v.passed, "{:?}", v.messages);
    // Its own prefix as a folder: an error, never "not breached".
    std::fs::create_dir(dir.path().join(format!("{mine}.txt"))).unwrap();
    let v = judge_password(&p, "a-different-passphrase-77", None).await;
    assert_eq!(v.outcomes[0].1, Outcome::Error);
}

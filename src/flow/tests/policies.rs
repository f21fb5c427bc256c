//! Policies bound to flows (who may start them) and to stages (whether they run), judged on
//! plan or when the stage is reached.

use super::rig::*;
use crate::policy::{Evaluator, Judge};
use std::sync::Arc;
use std::time::Duration;

const POLICIES: &str = r#"
[policies.staff]
kind = "expression"
expression = "user != null && 'staff' in user.groups"
message = "Staff only."
[policies.office]
kind = "network"
cidrs = ["192.0.2.0/24"]
message = "Only from the office."
[policies.elsewhere]
kind = "network"
cidrs = ["10.0.0.0/8"]
message = "Only from the lab."
[policies.phone_prefix]
kind = "expression"
expression = "'phone' in flow.prompt_data && flow.prompt_data.phone.startsWith('+1234')"
message = "Phones must start with +1234."
[policies.broken]
kind = "expression"
expression = "int(request.ip) > 0"
message = "Cannot tell."
[policies.reputation]
kind = "reputation"
threshold = 3
message = "Too many failed sign-ins; try again later."
[policies.always]
kind = "expression"
expression = "true"

[policies.request_facts]
kind = "expression"
expression = "request.headers['user-agent'] == 'flow-tests' && request.method == 'GET' && request.host == 'app.example.test' && request.path == '/' && request.ip == '192.0.2.7' && flow.slug == 'request_facts' && flow.designation == 'authentication' && time.now > 0"
message = "Facts differ."
[policies.forged_header]
kind = "expression"
expression = "'x-forwarded-for' in request.headers || 'User-Agent' in request.headers"
message = "Forged."

[stages.ask_phone]
kind = "prompt"
# `text`, not `tel`: the policy alone judges, so answers shaped as code reach it.
fields = [{ key = "phone", label = "Mobile number" }]
validation_policies = ["phone_prefix"]
[stages.choose_password]
kind = "prompt"
fields = [{ key = "nickname", label = "Nickname" }, { key = "new_password", label = "New password", type = "password" }]
validation_policies = ["strong_password"]
[policies.strong_password]
kind = "password"
password_field = "new_password"
length_min = 10
check_zxcvbn = true
message = "Choose a stronger password."
[stages.wrong_phone]
kind = "deny"
deny_message = "Phones must start with +1234."

[[flows]]
slug = "office_only"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
policies = ["office"]
[[flows]]
slug = "lab_only"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
policies = ["elsewhere"]
[[flows]]
slug = "lab_or_office"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
policies = ["elsewhere", "office"]
policy_engine_mode = "any"
[[flows]]
slug = "lab_and_office"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
policies = ["elsewhere", "office"]
[[flows]]
slug = "broken"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
policies = ["broken", "always"]
policy_engine_mode = "any"
[[flows]]
slug = "skip_outside_lab"
title = "Sign in"
designation = "authentication"
stages = ["identify", { stage = "no", policies = ["elsewhere"] }, "password", "login"]
[[flows]]
slug = "deny_outside_lab"
title = "Sign in"
designation = "authentication"
stages = ["identify", { stage = "no", policies = ["elsewhere"], negate = true }, "password", "login"]
[[flows]]
slug = "staff_on_plan"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", { stage = "no", policies = ["staff"], negate = true }, "login"]
[[flows]]
slug = "staff_when_reached"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", { stage = "no", policies = ["staff"], negate = true, evaluate_on_plan = false, re_evaluate_policies = true }, "login"]
[[flows]]
slug = "request_facts"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
policies = ["request_facts"]
[[flows]]
slug = "forged_header"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
policies = ["forged_header"]
[[flows]]
slug = "guarded_by_reputation"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
policies = ["reputation"]
[[flows]]
slug = "choose_password"
title = "Your details"
designation = "authentication"
stages = ["identify", "password", "choose_password", "login"]
[[flows]]
slug = "phone_checked"
title = "Your details"
designation = "authentication"
stages = ["identify", "password", "ask_phone", "login"]
[[flows]]
slug = "phone_prefix"
title = "Your details"
designation = "authentication"
stages = ["identify", "password", "ask", { stage = "wrong_phone", policies = ["phone_prefix"], negate = true, evaluate_on_plan = false, re_evaluate_policies = true }, "login"]
"#;

fn rig() -> Rig {
    Rig::with(POLICIES, None)
}

#[tokio::test]
async fn a_flow_whose_policy_fails_is_refused_with_the_policys_message() {
    let rig = rig();
    let (_, view) = rig.start("lab_only").await;
    assert_eq!(ended(&view), "Only from the lab.");
    // The tests' client (192.0.2.7) is in the office.
    let (_, view) = rig.start("office_only").await;
    assert_eq!(component(&view), "identification");
}

#[tokio::test]
async fn a_refused_execution_is_not_stored() {
    let rig = rig();
    let (exec, _) = rig.start("lab_only").await;
    assert!(rig.reload(&exec).is_none());
}

#[tokio::test]
async fn any_mode_needs_one_policy_and_all_mode_every_one() {
    let rig = rig();
    let (_, view) = rig.start("lab_or_office").await;
    assert_eq!(component(&view), "identification");
    let (_, view) = rig.start("lab_and_office").await;
    assert_eq!(ended(&view), "Only from the lab.");
}

#[tokio::test]
async fn a_policy_that_errors_denies_even_when_another_passes_in_any_mode() {
    let rig = rig();
    let (_, view) = rig.start("broken").await;
    assert_eq!(ended(&view), "Cannot tell.");
}

#[tokio::test]
async fn a_policy_over_its_time_bound_denies() {
    let slow: Arc<dyn Judge> = Arc::new(Evaluator::new(Duration::ZERO));
    let rig = Rig::with(POLICIES, Some(slow));
    // `always` is `true`, but it cannot answer within no time at all.
    let (_, view) = rig.start("broken").await;
    assert_eq!(ended(&view), "Cannot tell.");
}

#[tokio::test]
async fn a_stage_whose_binding_fails_is_skipped() {
    let rig = rig();
    rig.user("alice", None).await;
    // `no` (a deny stage) is bound to the lab network; from the office it never runs.
    let (_, view) = rig.signed_in_to("skip_outside_lab", "alice").await;
    assert_eq!(signed_in(&view), ["identification", "password"]);
}

#[tokio::test]
async fn negate_runs_the_stage_when_its_policies_fail() {
    let rig = rig();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.start("deny_outside_lab").await;
    let view = rig.post(&mut exec, &[("uid", "alice")]).await;
    assert_eq!(ended(&view), "Not today.");
}

#[tokio::test]
async fn on_plan_bindings_see_only_what_the_first_step_knew() {
    let rig = rig();
    let mut staff = rig.user("alice", None).await;
    staff.groups = vec!["staff".into()];
    crate::store::Store::put_user(&*rig.world.store, &staff).unwrap_or_else(|e| panic!("{e}"));
    // Planned before identification: no user, so `staff` fails and the negated deny runs.
    let (mut exec, _) = rig.start("staff_on_plan").await;
    rig.post(&mut exec, &[("uid", "alice")]).await;
    let view = rig.post(&mut exec, &[("password", PASSWORD)]).await;
    assert_eq!(ended(&view), "Not today.");
}

#[tokio::test]
async fn re_evaluated_bindings_see_the_user_identified_by_then() {
    let rig = rig();
    let mut staff = rig.user("alice", None).await;
    staff.groups = vec!["staff".into()];
    crate::store::Store::put_user(&*rig.world.store, &staff).unwrap_or_else(|e| panic!("{e}"));
    rig.user("bob", None).await;
    let (_, view) = rig.signed_in_to("staff_when_reached", "alice").await;
    assert_eq!(signed_in(&view), ["identification", "password"]);
    let (mut exec, _) = rig.start("staff_when_reached").await;
    rig.post(&mut exec, &[("uid", "bob")]).await;
    let view = rig.post(&mut exec, &[("password", PASSWORD)]).await;
    assert_eq!(ended(&view), "Not today.");
}

#[tokio::test]
async fn a_prompt_asks_again_with_the_policys_message_until_its_validation_policies_pass() {
    let rig = rig();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.start("phone_checked").await;
    rig.post(&mut exec, &[("uid", "alice")]).await;
    rig.post(&mut exec, &[("password", PASSWORD)]).await;
    // Answers are data, never code: quotes and CEL operators change nothing.
    for phone in [
        "+4930123456",
        "0012345",
        "+1 234 5",
        "+4930' || true || '",
        "\" || true || \"",
        "+49+1234",
    ] {
        let view = rig.post(&mut exec, &[("phone", phone)]).await;
        assert_eq!(component(&view), "prompt", "{phone}");
        assert_eq!(
            challenge(&view).errors,
            ["Phones must start with +1234."],
            "{phone}"
        );
        assert!(!exec.prompt_data.contains_key("phone"), "{phone} was kept");
    }
    let view = rig.post(&mut exec, &[("phone", "+12345550100")]).await;
    assert_eq!(signed_in(&view), ["identification", "password", "prompt"]);
}

#[tokio::test]
async fn the_phone_prefix_example_refuses_other_numbers() {
    let rig = rig();
    rig.user("alice", None).await;
    for (phone, refused) in [
        ("+12345550100", false),
        ("+4930123456", true),
        ("0012345", true),
        ("", true),
    ] {
        let (mut exec, _) = rig.start("phone_prefix").await;
        rig.post(&mut exec, &[("uid", "alice")]).await;
        rig.post(&mut exec, &[("password", PASSWORD)]).await;
        let view = rig
            .post(&mut exec, &[("nickname", "al"), ("phone", phone)])
            .await;
        if refused {
            assert_eq!(ended(&view), "Phones must start with +1234.", "{phone:?}");
        } else {
            assert_eq!(
                signed_in(&view),
                ["identification", "password", "prompt"],
                "{phone:?}"
            );
        }
    }
}

#[tokio::test]
async fn config_refuses_bad_policies_naming_the_policy() {
    let cases = [
        (
            "[policies.p]\nkind = \"expression\"\nexpression = \"user.name ==\"\n",
            "policies.p.expression",
        ),
        (
            "[policies.p]\nkind = \"expression\"\nexpression = \"secrets.key == 1\"\n",
            "policies.p.expression",
        ),
        (
            "[policies.p]\nkind = \"network\"\ncidrs = [\"10.0.0.0/33\"]\n",
            "policies.p.cidrs[0]",
        ),
        (
            "[policies.p]\nkind = \"network\"\ncidrs = [\"10.0.0.0/8\"]\nexpression = \"true\"\n",
            "",
        ),
        (
            "[policies.p]\nkind = \"network\"\nnetworks = [\"office\"]\n",
            "policies.p.networks[0]: no [networks] entry named `office`",
        ),
        (
            "[policies.p]\nkind = \"network\"\n",
            "policies.p.cidrs",
        ),
        (
            "[[flows]]\nslug = \"x\"\ndesignation = \"authentication\"\nstages = [\"identify\"]\npolicies = [\"nope\"]\n",
            "flows[12].policies[0]",
        ),
        (
            "[policies.p]\nkind = \"expression\"\nexpression = \"true\"\n[[flows]]\nslug = \"x\"\ndesignation = \"authentication\"\nstages = [\"identify\"]\npolicies = [\"p\"]\npolicy_engine_mode = \"most\"\n",
            "flows[12].policy_engine_mode",
        ),
        (
            "[policies.p]\nkind = \"expression\"\nexpression = \"true\"\n[[flows]]\nslug = \"x\"\ndesignation = \"authentication\"\nstages = [{ stage = \"identify\", policies = [\"p\"], evaluate_on_plan = false }]\n",
            "flows[12].stages[0]",
        ),
        (
            "[policies.p]\nkind = \"password\"\npassword_field = \"pw\"\n",
            "policies.p: a password policy needs at least one rule",
        ),
        (
            "[policies.p]\nkind = \"password\"\nlength_min = 8\namount_digit = 1\n",
            "amount_digit",
        ),
        (
            "[stages.p]\nkind = \"prompt\"\nfields = [{ key = \"a\" }]\nvalidation_policies = [\"nope\"]\n",
            "stages.p.validation_policies[0]",
        ),
        (
            "[policies.p]\nkind = \"password\"\ncheck_zxcvbn = true\nzxcvbn_score_threshold = 4\n",
            "policies.p.zxcvbn_score_threshold: 4 would refuse every password",
        ),
        (
            "[policies.p]\nkind = \"password\"\ncheck_have_i_been_pwned = true\n",
            "policies.p.hibp_directory: check_have_i_been_pwned needs a folder",
        ),
        (
            "[policies.p]\nkind = \"password\"\nhibp_directory = \"/nonexistent/pwned-passwords\"\n",
            "policies.p.hibp_directory: `/nonexistent/pwned-passwords` is not a readable folder",
        ),
        (
            "[policies.p]\nkind = \"password\"\ncheck_zxcvbn = false\ncheck_static_rules = false\nlength_min = 8\n",
            "policies.p: a password policy needs at least one rule",
        ),
        (
            "[policies.p]\nkind = \"password\"\nhibp_dir = \"/tmp\"\n",
            "hibp_dir",
        ),
    ];
    for (extra, path) in cases {
        match Rig::config(extra) {
            Ok(_) => panic!("accepted: {extra}"),
            Err(e) => assert!(e.to_string().contains(path), "{extra}: {e}"),
        }
    }
    let e = Rig::config("[policies.p]\nkind = \"expression\"\nexpression = \"secrets.key == 1\"\n")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("unknown variable `secrets`"), "{e}");
}

/// A network policy may name `[networks]` entries (the ones access rules use) beside its own
/// CIDRs: the office network is written once.
#[tokio::test]
async fn a_network_policy_takes_named_networks_beside_its_own_cidrs() {
    let cfg = Rig::config(
        "[networks]\noffice = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n[policies.p]\nkind = \"network\"\nnetworks = [\"office\"]\ncidrs = [\"192.0.2.0/24\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let policy = cfg.policies.get("p").unwrap_or_else(|| panic!("policy p"));
    let crate::policy::PolicyKind::Network(nets) = &policy.kind else {
        panic!("not a network policy");
    };
    let listed: Vec<String> = nets.iter().map(ToString::to_string).collect();
    assert_eq!(listed, ["192.0.2.0/24", "10.0.0.0/8", "2001:db8::/32"]);
}

#[tokio::test]
async fn expressions_see_the_request_with_lower_case_header_names_and_only_selected_headers() {
    let rig = rig();
    let (_, view) = rig.start("request_facts").await;
    assert_eq!(component(&view), "identification");
    // The rig sends `User-Agent`; it is seen as `user-agent`, and no other header is.
    let (_, view) = rig.start("forged_header").await;
    assert_eq!(ended(&view), "Forged.");
}

/// The policies commented in `config/portcullis.toml`, uncommented, do what its comments say.
#[tokio::test]
async fn the_example_configs_phone_prefix_policy_works_as_commented() {
    let example = std::fs::read_to_string("config/portcullis.toml")
        .unwrap_or_else(|e| panic!("the example config: {e}"));
    let start = example
        .find("# [policies.phone_prefix]")
        .unwrap_or_else(|| panic!("no phone_prefix example"));
    let toml: String = example[start..]
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            let key = l.split_once(" = ").map(|(k, _)| k);
            l.starts_with("[policies.")
                || key.is_some_and(|k| {
                    k != "stages" && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                })
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(toml.contains("[policies.office]"), "{toml}");
    let rig = Rig::with(
        &format!(
            "{}\n{toml}",
            r#"
[stages.example_phone]
kind = "prompt"
fields = [{ key = "phone", label = "Mobile number", type = "tel" }]
validation_policies = ["phone_prefix"]
[[flows]]
slug = "example"
title = "Add a phone"
designation = "authentication"
stages = ["identify", "password", "example_phone", "login"]
"#
        ),
        None,
    );
    rig.user("alice", None).await;
    let (mut exec, _) = rig.start("example").await;
    rig.post(&mut exec, &[("uid", "alice")]).await;
    rig.post(&mut exec, &[("password", PASSWORD)]).await;
    let view = rig.post(&mut exec, &[("phone", "+41 79 123 45 67")]).await;
    assert_eq!(
        challenge(&view).errors,
        ["Use a phone number that starts with +1234."]
    );
    let view = rig.post(&mut exec, &[("phone", "+1234 555 0100")]).await;
    assert_eq!(signed_in(&view), ["identification", "password", "prompt"]);
}

#[tokio::test]
async fn a_reputation_policy_refuses_after_the_threshold_of_failed_passwords() {
    let rig = rig();
    rig.user("alice", None).await;
    // Two wrong passwords: still under the threshold of three.
    let (mut exec, _) = rig.start("guarded_by_reputation").await;
    rig.post(&mut exec, &[("uid", "alice")]).await;
    for _ in 0..2 {
        rig.post(&mut exec, &[("password", "wrong")]).await;
    }
    let (mut exec, view) = rig.start("guarded_by_reputation").await;
    assert_eq!(component(&view), "identification");
    rig.post(&mut exec, &[("uid", "alice")]).await;
    rig.post(&mut exec, &[("password", "wrong")]).await;
    // The address now has three failures: the flow is refused, even for the right password.
    let (_, view) = rig.start("guarded_by_reputation").await;
    assert_eq!(ended(&view), "Too many failed sign-ins; try again later.");
    // The failures expire with their window.
    rig.world.clock.advance_secs(3601);
    let (_, view) = rig.start("guarded_by_reputation").await;
    assert_eq!(component(&view), "identification");
}

/// `hibp_directory` is read against the config file's folder, like every other path, and
/// `check_have_i_been_pwned` is on once a folder is named.
#[test]
fn a_relative_hibp_directory_is_read_against_the_config_files_folder() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("pwned")).unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "{}\n[policies.p]\nkind = \"password\"\nhibp_directory = \"pwned\"\nhibp_allowed_count = 5\n",
        super::rig::CONFIG
    );
    let cfg = crate::config::Config::from_toml(
        &text,
        &dir.path().join("portcullis.toml"),
        std::iter::empty(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let p = cfg.policies.get("p").unwrap_or_else(|| panic!("policy p"));
    let crate::policy::PolicyKind::Password(rules) = &p.kind else {
        panic!("not a password policy");
    };
    let list = rules.breached.as_ref().unwrap_or_else(|| panic!("no list"));
    let want = std::fs::canonicalize(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(list.dir, want.join("pwned"));
    assert_eq!(list.allowed_count, 5);
    assert!(rules.check_static_rules && rules.zxcvbn_score_threshold.is_none());
}

/// A password refused by its policy: the user is told why, the other answers stay in the form,
/// the password does not, and nothing is remembered until the policy passes.
#[tokio::test]
async fn a_refused_password_keeps_the_other_answers_but_never_the_password() {
    let rig = rig();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.start("choose_password").await;
    rig.post(&mut exec, &[("uid", "alice")]).await;
    rig.post(&mut exec, &[("password", PASSWORD)]).await;
    for weak in ["password123", "alicealice1", "short"] {
        let view = rig
            .post(&mut exec, &[("nickname", "Al"), ("new_password", weak)])
            .await;
        assert_eq!(component(&view), "prompt", "{weak}");
        let c = challenge(&view);
        assert_eq!(
            c.errors[0], "Choose a stronger password.",
            "{weak}: {:?}",
            c.errors
        );
        let value = |name: &str| {
            c.fields
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("no {name}"))
                .value
                .clone()
        };
        assert_eq!(value("nickname").as_deref(), Some("Al"), "{weak}");
        assert_eq!(value("new_password"), None, "{weak}");
        assert!(exec.prompt_data.is_empty(), "{weak} remembered something");
        let state = serde_json::to_string(&exec).unwrap_or_default();
        assert!(!state.contains(weak), "{weak} stored in the execution");
    }
    let view = rig
        .post(
            &mut exec,
            &[
                ("nickname", "Al"),
                ("new_password", "tangerine-Orbit-lantern-58"),
            ],
        )
        .await;
    assert_eq!(signed_in(&view), ["identification", "password", "prompt"]);
}

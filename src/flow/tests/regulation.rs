//! Issue 14, points 1 and 2 in the engine: failures are counted per (account, address) and by
//! regulation, so a stranger hammering an account from elsewhere never refuses the owner.

use super::rig::{other_than, Rig, AT, PASSWORD};
use crate::config::Regulation;
use crate::flow::delivery::Pace;
use crate::flow::{Caller, Engine, Execution, FlowError, Input, Step, View};
use crate::regulation::Regulator;
use crate::testing::TestWorld;
use std::sync::Arc;

const STRANGER: Caller<'static> = Caller {
    client: "203.0.113.66",
    ..AT
};

/// The standard rig, with `[regulation]` at its defaults (on) or off.
fn rig(regulated: bool) -> Rig {
    let config = Rig::config("").unwrap_or_else(|e| panic!("{e}"));
    let mut world = TestWorld::for_config(&config);
    let cfg = if regulated {
        Regulation::default()
    } else {
        Regulation::off()
    };
    world.services.regulator = Arc::new(
        Regulator::new(cfg, world.store.clone(), world.clock.clone()).expect("memory store"),
    );
    let mut engine = Engine::new(&config, world.services.clone());
    engine.pace = std::sync::Arc::new(Pace::instant());
    Rig { engine, world }
}

async fn start_as(rig: &Rig, flow: &str, at: Caller<'_>) -> Execution {
    let mut exec = rig
        .engine
        .start(flow, "https://app.example.test/".into(), at.client)
        .unwrap_or_else(|e| panic!("start: {e}"));
    rig.engine
        .view(&mut exec, at)
        .await
        .unwrap_or_else(|e| panic!("view: {e}"));
    exec
}

async fn post_as(
    rig: &Rig,
    exec: &mut Execution,
    fields: &[(&str, &str)],
    at: Caller<'_>,
) -> Result<View, FlowError> {
    let input: Input = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    rig.engine.submit(exec, input, at).await
}

fn is_regulated(r: &Result<View, FlowError>) -> bool {
    matches!(r, Err(FlowError::Regulated { .. }))
}

#[tokio::test]
async fn a_strangers_wrong_codes_and_sign_in_starts_never_refuse_the_owners_fresh_code() {
    for regulated in [false, true] {
        let rig = rig(regulated);
        rig.user("alice", Some("alice@example.test")).await;
        // From another address: three sign-ins started for alice (a code mailed to her each
        // time), each with every wrong code it allows.
        for _ in 0..3 {
            let mut exec = start_as(&rig, "email_first", STRANGER).await;
            post_as(&rig, &mut exec, &[("uid", "alice")], STRANGER)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let wrong = other_than(&rig.mailed_code());
            for _ in 0..3 {
                let r = post_as(&rig, &mut exec, &[("code", &wrong)], STRANGER).await;
                assert!(r.is_ok() || (regulated && is_regulated(&r)), "{r:?}");
                if !matches!(
                    r,
                    Ok(View {
                        step: Step::Challenge { .. },
                        ..
                    })
                ) {
                    break;
                }
            }
        }
        // Alice, from her own browser and address, gets a fresh code and signs in with it.
        let mut exec = start_as(&rig, "email_first", AT).await;
        post_as(&rig, &mut exec, &[("uid", "alice")], AT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let code = rig.mailed_code();
        let view = post_as(&rig, &mut exec, &[("code", &code)], AT)
            .await
            .unwrap_or_else(|e| panic!("regulated={regulated}: {e}"));
        assert!(
            matches!(view.step, Step::Done { login: Some(_), .. }),
            "regulated={regulated}: {view:?}"
        );
    }
}

#[tokio::test]
async fn wrong_codes_from_one_address_still_end_at_the_limit_there() {
    let rig = rig(false);
    rig.user("alice", Some("alice@example.test")).await;
    let mut first = start_as(&rig, "email_first", STRANGER).await;
    post_as(&rig, &mut first, &[("uid", "alice")], STRANGER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let wrong = other_than(&rig.mailed_code());
    post_as(&rig, &mut first, &[("code", &wrong)], STRANGER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    post_as(&rig, &mut first, &[("code", &wrong)], STRANGER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A new sign-in from the same address does not get a fresh allowance of guesses.
    let mut second = start_as(&rig, "email_first", STRANGER).await;
    post_as(&rig, &mut second, &[("uid", "alice")], STRANGER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let code = rig.mailed_code();
    let view = post_as(&rig, &mut second, &[("code", &other_than(&code))], STRANGER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(view.step, Step::Ended { .. }), "{view:?}");
}

#[tokio::test]
async fn password_guesses_are_banned_per_address_while_the_owner_signs_in() {
    let rig = rig(true);
    rig.user("alice", Some("alice@example.test")).await;
    let mut refused = 0;
    for _ in 0..6 {
        let mut exec = start_as(&rig, "login", STRANGER).await;
        post_as(&rig, &mut exec, &[("uid", "alice")], STRANGER)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let r = post_as(&rig, &mut exec, &[("password", "wrong")], STRANGER).await;
        refused += usize::from(is_regulated(&r));
    }
    assert_eq!(refused, 3, "three judged, then banned");
    // Unknown accounts are counted and banned the same way.
    let mut exec = start_as(&rig, "login", STRANGER).await;
    post_as(&rig, &mut exec, &[("uid", "nobody")], STRANGER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = post_as(&rig, &mut exec, &[("password", "wrong")], STRANGER).await;
    assert!(
        is_regulated(&r),
        "the address is banned whatever the name: {r:?}"
    );
    let (_, view) = rig.signed_in_to("login", "alice").await;
    assert!(
        matches!(view.step, Step::Done { login: Some(_), .. }),
        "{view:?}"
    );
    let _ = PASSWORD;
}

#[tokio::test]
async fn passkey_setup_ends_after_five_refused_registrations() {
    let extra = r#"
[webauthn]
rp_id = "app.example.test"
origins = ["https://app.example.test"]
[[flows]]
slug = "pk_setup"
designation = "authentication"
stages = ["identify", "password", "pk", "login"]
[stages.pk]
kind = "authenticator_webauthn"
friendly_name = "Laptop passkey"
"#;
    let rig = Rig::with(extra, None);
    rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, view) = rig.signed_in_to("pk_setup", "alice").await;
    assert!(matches!(view.step, Step::Challenge { .. }), "{view:?}");
    let forged = [
        "{}",
        "not json",
        r#"{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{}}"#,
        "[]",
    ];
    for answer in forged {
        let view = rig.post(&mut exec, &[("credential", answer)]).await;
        let Step::Challenge { challenge, .. } = &view.step else {
            panic!("{answer}: {view:?}");
        };
        assert_eq!(
            challenge.errors.len(),
            1,
            "{answer}: a new ceremony, and why"
        );
    }
    let view = rig.post(&mut exec, &[("credential", "{}")]).await;
    assert_eq!(
        super::rig::ended(&view),
        crate::flow::stages::authenticator_webauthn::TOO_MANY_REGISTRATIONS
    );
}

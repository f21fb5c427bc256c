//! Several gateways (replicas) on one store: each engine has its own in-process step lock, so
//! only the store's compare-and-swap of the execution keeps a step from being applied twice.
//! Over the memory store (two engines on one store) and over PostgreSQL (two engines on two
//! connections to one database).

use super::rig::*;
use crate::flow::{Engine, Execution, FlowError, Input, Step, View};
use crate::secret::SecretString;
use crate::store::{Store, User};
use std::sync::Arc;

/// Another replica: an engine of the rig's config over `services`.
fn replica(services: crate::flow::Services) -> Arc<Engine> {
    let config = Rig::config("").expect("config");
    let mut engine = Engine::new(&config, services);
    engine.pace = Arc::new(crate::flow::delivery::Pace::instant());
    Arc::new(engine)
}

async fn answer(
    engine: &Engine,
    exec: &mut Execution,
    fields: &[(&str, &str)],
) -> Result<View, FlowError> {
    let input: Input = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    engine.submit(exec, input, AT).await
}

/// As the portal does on each replica: lock (this replica's lock only), load, answer.
async fn on(engine: Arc<Engine>, id: String, flow: &str, code: String) -> Result<View, FlowError> {
    let _guard = engine.lock(&id).await;
    let mut exec = engine.resume(&id, flow)?.expect("stored");
    answer(&engine, &mut exec, &[("code", &code)]).await
}

/// Both replicas load the execution (as two requests arriving together do), then answer it
/// with `code` at once, each under its own replica's lock.
async fn race(
    a: &Arc<Engine>,
    b: &Arc<Engine>,
    id: &str,
    code: &str,
) -> [Result<View, FlowError>; 2] {
    let loaded = |e: &Arc<Engine>| e.resume(id, "setup").expect("store").expect("stored");
    let (ea, eb) = (loaded(a), loaded(b));
    let go = |engine: Arc<Engine>, mut exec: Execution, code: String| async move {
        let _guard = engine.lock(&exec.id.clone()).await;
        answer(&engine, &mut exec, &[("code", &code)]).await
    };
    let (ra, rb) = tokio::join!(
        tokio::spawn(go(a.clone(), ea, code.to_string())),
        tokio::spawn(go(b.clone(), eb, code.to_string())),
    );
    [ra.expect("task"), rb.expect("task")]
}

fn signed_in(r: &Result<View, FlowError>) -> bool {
    matches!(
        r,
        Ok(View {
            step: Step::Done { login: Some(_), .. },
            ..
        })
    )
}

fn already_answered(r: &Result<View, FlowError>) -> bool {
    matches!(r, Err(FlowError::AlreadyAnswered))
}

/// Signs `alice` in to `setup` up to its e-mail code on `engine`: the execution's id.
async fn up_to_the_code(engine: &Engine) -> String {
    let mut exec = engine
        .start("setup", "https://app.example.test/".into(), AT.client)
        .expect("start");
    engine.view(&mut exec, AT).await.expect("view");
    answer(engine, &mut exec, &[("uid", "alice")])
        .await
        .expect("uid");
    answer(engine, &mut exec, &[("password", PASSWORD)])
        .await
        .expect("password");
    assert!(exec.stored());
    exec.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_code_sent_to_two_memory_replicas_at_once_is_accepted_once() {
    let rig = Rig::new();
    rig.user("alice", Some("alice@example.test")).await;
    let (a, b) = (
        replica(rig.world.services.clone()),
        replica(rig.world.services.clone()),
    );
    for _ in 0..10 {
        // A new window each round: the stage sends at most 3 codes an hour.
        rig.world.clock.advance_secs(3_601);
        let id = up_to_the_code(&a).await;
        let code = rig.mailed_code();
        let results = race(&a, &b, &id, &code).await;
        let wins = results.iter().filter(|r| signed_in(r)).count();
        assert_eq!(wins, 1, "one session from one code: {results:?}");
        assert!(
            results.iter().any(already_answered),
            "the other is told the step was answered: {results:?}"
        );
    }
}

#[tokio::test]
async fn a_step_loaded_before_another_replica_moved_on_is_not_applied() {
    let rig = Rig::new();
    rig.user("alice", Some("alice@example.test")).await;
    let b = replica(rig.world.services.clone());
    let (exec, _) = rig.signed_in_to("setup", "alice").await;
    let code = rig.mailed_code();
    let mut late = b.resume(&exec.id, "setup").expect("store").expect("stored");
    let mut first = rig.reload(&exec).expect("stored");
    let view = rig.post(&mut first, &[("code", &code)]).await;
    assert!(matches!(view.step, Step::Done { login: Some(_), .. }));
    let devices = rig.devices("alice").len();
    // The other replica loaded the execution before; its answer with the same code loses.
    let second = answer(&b, &mut late, &[("code", &code)]).await;
    assert!(already_answered(&second), "{second:?}");
    assert_eq!(rig.devices("alice").len(), devices, "no second device");
    assert!(rig.reload(&exec).is_none(), "not brought back");
}

#[tokio::test]
async fn a_cancelled_execution_is_not_resurrected_by_a_late_save_on_another_replica() {
    let rig = Rig::new();
    rig.user("alice", Some("alice@example.test")).await;
    let b = replica(rig.world.services.clone());
    let (exec, _) = rig.signed_in_to("setup", "alice").await;
    let wrong = other_than(&rig.mailed_code());
    let mut late = b.resume(&exec.id, "setup").expect("store").expect("stored");
    let mut a = rig.reload(&exec).expect("stored");
    let mut ended = false;
    for _ in 0..3 {
        let view = rig.post(&mut a, &[("code", &wrong)]).await;
        ended = matches!(view.step, Step::Ended { .. });
    }
    assert!(ended, "the third wrong code ends the sign-in");
    assert!(rig.reload(&exec).is_none());
    // Replica B still holds the state from before the first wrong code (no attempts yet).
    let result = answer(&b, &mut late, &[("code", &wrong)]).await;
    assert!(already_answered(&result), "{result:?}");
    assert!(
        rig.reload(&exec).is_none(),
        "the cancelled sign-in stays gone"
    );
}

/// Two engines on two connections to one fresh PostgreSQL database, as two replicas, and the
/// store they share (through the first connection). Mail goes to the rig's recording sender.
async fn postgres_replicas(rig: &Rig) -> (Arc<Engine>, Arc<Engine>, Arc<dyn Store>) {
    // The test server and the store's own runtime block while they start: off this runtime.
    let (sa, sb) = tokio::task::spawn_blocking(|| {
        let config = crate::store::test_server::server().fresh_database();
        let connect = || -> Arc<dyn Store> {
            Arc::new(crate::store::PgStore::connect(&config).expect("connect"))
        };
        (connect(), connect())
    })
    .await
    .expect("connect");
    let mut a = rig.world.services.clone();
    a.store = sa.clone();
    let mut b = rig.world.services.clone();
    b.store = sb;
    (replica(a), replica(b), sa)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_code_sent_to_two_postgres_replicas_at_once_is_accepted_once() {
    let rig = Rig::new();
    let (a, b, store) = postgres_replicas(&rig).await;
    let mut alice = User::new("alice", 0);
    alice.email = Some("alice@example.test".into());
    let hash = rig
        .world
        .services
        .passwords
        .hash(SecretString::new(PASSWORD))
        .await;
    alice.password_hash = Some(hash.expect("hash"));
    store.put_user(&alice).expect("user");
    for round in 0..5 {
        // A new window each round: the stage sends at most 3 codes an hour.
        rig.world.clock.advance_secs(3_601);
        let id = up_to_the_code(&a).await;
        let code = rig.mailed_code();
        let results = race(&a, &b, &id, &code).await;
        let wins = results.iter().filter(|r| signed_in(r)).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        assert!(results.iter().any(already_answered), "{results:?}");
        assert_eq!(store.execution(&id, 0).expect("store"), None);
    }
    // A cancelled sign-in is not brought back by a late save on the other replica.
    rig.world.clock.advance_secs(3_601);
    let id = up_to_the_code(&a).await;
    let wrong = other_than(&rig.mailed_code());
    let mut late = b.resume(&id, "setup").expect("store").expect("stored");
    for _ in 0..3 {
        on(a.clone(), id.clone(), "setup", wrong.clone())
            .await
            .expect("wrong code");
    }
    assert_eq!(store.execution(&id, 0).expect("store"), None, "cancelled");
    let result = answer(&b, &mut late, &[("code", &wrong)]).await;
    assert!(already_answered(&result), "{result:?}");
    assert_eq!(store.execution(&id, 0).expect("store"), None, "stays gone");
}

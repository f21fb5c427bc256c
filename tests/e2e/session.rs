//! The session cookie: its claims, forged and expired tokens, sign-out and revocation, keys.

use crate::harness::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

/// Claims of a real session, for re-signing.
fn claims_of(token: &str) -> Value {
    jwt_parts(token).1
}

#[tokio::test(flavor = "multi_thread")]
async fn session_token_is_hs256_jwt_with_expected_claims() {
    let gw = Gateway::start().await;
    let (_, s) = alice_browser(&gw).await;
    let keys = gw.keys();
    let (header, claims) = jwt_parts(&s.token);
    assert_eq!(header["alg"], "HS256", "{header}");
    assert_eq!(header["kid"], keys.active.as_str(), "{header}");
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["name"], "Alice A", "{claims}");
    assert_eq!(claims["email"], "alice@example.com", "{claims}");
    assert_eq!(claims["groups"], json!(["staff", "ops"]), "{claims}");
    assert_eq!(claims["iss"], "portcullis", "{claims}");
    let amr: Vec<&str> = claims["amr"]
        .as_array()
        .unwrap_or_else(|| panic!("amr not an array: {claims}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        amr.contains(&"identification") && amr.contains(&"password"),
        "amr: {amr:?}"
    );
    assert!(
        claims["sid"].as_str().is_some_and(|s| s.len() >= 16),
        "sid: {claims}"
    );
    let iat = claims["iat"].as_i64().expect("iat");
    let exp = claims["exp"].as_i64().expect("exp");
    assert!((iat - now()).abs() < 60, "iat {iat} is not now");
    assert!(
        (exp - iat - 12 * 3600).abs() <= 5,
        "exp - iat = {} (want 12h)",
        exp - iat
    );

    // The signature verifies with the active key from keys.json.
    let key = keys.active_key();
    assert_eq!(key.secret.len(), 32, "HS256 secret should be 32 bytes");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.set_issuer(&["portcullis"]);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(
        &s.token,
        &jsonwebtoken::DecodingKey::from_secret(&key.secret),
        &validation,
    )
    .expect("session token does not verify with the active key in keys.json");

    // keys.json is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(gw.keys_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "keys.json mode is {mode:o}");

    // Two sign-ins get two different sids.
    let (_, s2) = alice_browser(&gw).await;
    assert_ne!(claims_of(&s2.token)["sid"], claims["sid"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn resigned_token_with_the_real_key_is_accepted_control() {
    // Control for the forgery tests below: re-signing a real session's claims with the real
    // key must work, so their refusals come from the one thing each one changes.
    let gw = Gateway::start().await;
    let (_, s) = alice_browser(&gw).await;
    let keys = gw.keys();
    let key = keys.active_key();
    let token = sign(
        Algorithm::HS256,
        Some(&key.kid),
        &claims_of(&s.token),
        &key.secret,
    );
    let echo = assert_token_accepted(&gw, &token, "re-signed with the real key").await;
    assert_eq!(echo.header("remote-user"), Some("alice"));
    let echo = assert_token_accepted(&gw, &s.token, "the real token").await;
    assert_eq!(echo.header("remote-user"), Some("alice"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_signature_cookie_is_refused() {
    let gw = Gateway::start().await;
    let (_, s) = alice_browser(&gw).await;
    let (head, sig) = s.token.rsplit_once('.').unwrap();

    // Flip one signature character.
    let mut sig_bytes: Vec<char> = sig.chars().collect();
    sig_bytes[5] = if sig_bytes[5] == 'A' { 'B' } else { 'A' };
    let flipped = format!("{head}.{}", sig_bytes.into_iter().collect::<String>());
    assert_token_refused(&gw, &flipped, "flipped signature").await;

    // Signature removed.
    assert_token_refused(&gw, &format!("{head}."), "empty signature").await;

    // Claims changed (bob, admins) under alice's signature.
    let mut claims = claims_of(&s.token);
    claims["sub"] = json!("bob");
    claims["groups"] = json!(["admins"]);
    let (h, _) = s.token.split_once('.').unwrap();
    let forged = format!("{h}.{}.{sig}", b64url(claims.to_string().as_bytes()));
    assert_token_refused(&gw, &forged, "claims changed under the old signature").await;

    // Garbage.
    assert_token_refused(&gw, "not-a-jwt", "garbage").await;

    // The real one still works.
    assert_token_accepted(&gw, &s.token, "real token").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_signed_with_a_foreign_key_is_refused() {
    let gw = Gateway::start().await;
    let (_, s) = alice_browser(&gw).await;
    let keys = gw.keys();
    let claims = claims_of(&s.token);
    let foreign = [7u8; 32];
    let t = sign(Algorithm::HS256, Some(&keys.active), &claims, &foreign);
    assert_token_refused(&gw, &t, "foreign key, real kid").await;
    let t = sign(Algorithm::HS256, Some("attacker-key"), &claims, &foreign);
    assert_token_refused(&gw, &t, "foreign key, unknown kid").await;
    let t = sign(Algorithm::HS256, None, &claims, &foreign);
    assert_token_refused(&gw, &t, "foreign key, no kid").await;
    // The right key under an unknown kid must not be accepted as some other key either.
    let t = sign(Algorithm::HS256, Some("attacker-key"), &claims, &[0u8; 32]);
    assert_token_refused(&gw, &t, "zero key").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alg_none_cookie_is_refused() {
    let gw = Gateway::start().await;
    let (_, s) = alice_browser(&gw).await;
    let keys = gw.keys();
    let claims = claims_of(&s.token);
    let (_, real_sig) = s.token.rsplit_once('.').unwrap();
    for alg in ["none", "None", "NONE"] {
        let header = json!({ "alg": alg, "typ": "JWT", "kid": keys.active });
        assert_token_refused(
            &gw,
            &unsigned_token(&header, &claims, ""),
            &format!("alg {alg}, no signature"),
        )
        .await;
        assert_token_refused(
            &gw,
            &unsigned_token(&header, &claims, real_sig),
            &format!("alg {alg}, real signature"),
        )
        .await;
    }
    let header = json!({ "alg": "none", "typ": "JWT" });
    let mut bob = claims.clone();
    bob["sub"] = json!("bob");
    assert_token_refused(
        &gw,
        &unsigned_token(&header, &bob, ""),
        "alg none, no kid, other user",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_cookie_is_refused() {
    let gw = Gateway::start().await;
    let (_, s) = alice_browser(&gw).await;
    let key = gw.keys().active_key().clone();
    let mut claims = claims_of(&s.token);
    claims["iat"] = json!(now() - 2 * 3600);
    claims["exp"] = json!(now() - 3600);
    let t = sign(Algorithm::HS256, Some(&key.kid), &claims, &key.secret);
    assert_token_refused(&gw, &t, "expired an hour ago").await;

    // Without exp at all: refused as well (a token must expire).
    let mut claims = claims_of(&s.token);
    claims.as_object_mut().unwrap().remove("exp");
    let t = sign(Algorithm::HS256, Some(&key.kid), &claims, &key.secret);
    assert_token_refused(&gw, &t, "no exp").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn other_algorithm_cookie_is_refused_even_with_the_right_secret() {
    let gw = Gateway::start().await;
    let (_, s) = alice_browser(&gw).await;
    let key = gw.keys().active_key().clone();
    let claims = claims_of(&s.token);
    for alg in [Algorithm::HS512, Algorithm::HS384] {
        let t = sign(alg, Some(&key.kid), &claims, &key.secret);
        assert_token_refused(&gw, &t, &format!("{alg:?} with the right secret")).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_issuer_cookie_is_refused() {
    let gw = Gateway::start().await;
    let (_, s) = alice_browser(&gw).await;
    let key = gw.keys().active_key().clone();
    let mut claims = claims_of(&s.token);
    claims["iss"] = json!("someone-else");
    let t = sign(Algorithm::HS256, Some(&key.kid), &claims, &key.secret);
    assert_token_refused(&gw, &t, "wrong iss").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_logout_revokes_the_session_at_once() {
    let gw = Gateway::start().await;
    let (b, s) = alice_browser(&gw).await;
    assert_eq!(
        b.get_json("/before").await.echo().header("remote-user"),
        Some("alice")
    );

    // Without a JSON content type: 415 and nothing revoked.
    let r = b
        .send(
            b.http
                .post(gw.url("/.portcullis/api/logout"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(""),
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.describe());
    let r = b.send(b.http.post(gw.url("/.portcullis/api/logout"))).await;
    assert_eq!(r.status, 415, "no content type: {}", r.describe());
    assert_token_accepted(&gw, &s.token, "after refused logouts").await;

    let r = b.post_json("/.portcullis/api/logout", &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json(), json!({ "status": "signed_out" }));
    let clear = r
        .set_cookie(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("logout does not clear the cookie: {}", r.describe()));
    assert!(cookie_is_cleared(&clear), "{clear}");

    // The same token, replayed by hand right away, is refused (long before exp).
    assert_token_refused(&gw, &s.token, "revoked by API logout").await;
    let r = b.get_json("/after").await;
    assert_eq!(r.status, 401, "{}", r.describe());

    // A new sign-in works again and is a new session.
    let b2 = gw.browser();
    let s2 = api_sign_in(&b2, "alice", ALICE_PW).await;
    assert_ne!(jwt_parts(&s2.token).1["sid"], jwt_parts(&s.token).1["sid"]);
    assert_token_accepted(&gw, &s2.token, "new session").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn html_logout_confirm_then_post_revokes_the_session() {
    let gw = Gateway::start().await;
    let (b, s) = alice_browser(&gw).await;
    // The other session of the same user stays valid: revocation is per session.
    let (_, other) = alice_browser(&gw).await;

    let r = b.get_html("/.portcullis/logout").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.content_type().starts_with("text/html"));
    assert!(
        has_post_form(&r.body),
        "confirm page without a POST form:\n{}",
        r.body
    );
    let csrf =
        input_value(&r.body, "csrf_token").unwrap_or_else(|| panic!("no csrf_token:\n{}", r.body));
    assert!(!csrf.is_empty());
    // GET alone signs nobody out.
    assert_token_accepted(&gw, &s.token, "after GET logout").await;

    // Without / with a wrong csrf token: 403, still signed in.
    let r = b.post_form("/.portcullis/logout", &[]).await;
    assert_eq!(r.status, 403, "{}", r.describe());
    let r = b
        .post_form("/.portcullis/logout", &[("csrf_token", "wrong")])
        .await;
    assert_eq!(r.status, 403, "{}", r.describe());
    assert_token_accepted(&gw, &s.token, "after forged logout posts").await;

    let r = b
        .post_form("/.portcullis/logout", &[("csrf_token", &csrf)])
        .await;
    assert!(
        r.status == 200 || r.status == 303 || r.status == 302,
        "{}",
        r.describe()
    );
    let clear = r
        .set_cookie(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("logout does not clear the cookie: {}", r.describe()));
    assert!(cookie_is_cleared(&clear), "{clear}");

    assert_token_refused(&gw, &s.token, "revoked by HTML logout").await;
    let r = b.get_html("/after").await;
    assert_eq!(r.status, 302, "{}", r.describe());

    assert_token_accepted(&gw, &other.token, "another session of the same user").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_session_stays_revoked_after_restart() {
    let mut gw = Gateway::start().await;
    let (b, s) = alice_browser(&gw).await;
    let r = b.post_json("/.portcullis/api/logout", &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_token_refused(&gw, &s.token, "revoked").await;
    gw.restart().await;
    assert_token_refused(&gw, &s.token, "revoked, after restart").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_rotate_on_a_running_gateway_goes_through_it_and_new_sign_ins_use_the_new_key() {
    let mut gw = Gateway::start().await;
    let (_, old) = alice_browser(&gw).await;
    let before = gw.keys();
    let out = gw.cli(&["keys", "rotate"], None).await;
    assert!(out.ok(), "keys rotate failed: {out:?}");
    assert!(out.all().contains("via running gateway"), "{}", out.all());
    assert_token_accepted(&gw, &old.token, "token signed by the previous key").await;
    let (_, new) = alice_browser(&gw).await;
    let kid = jwt_parts(&new.token).0["kid"].as_str().unwrap().to_string();
    assert_ne!(kid, before.active, "new sign-ins use the new key");
    assert!(
        out.all().contains(&kid),
        "the CLI names the new key: {}",
        out.all()
    );
    gw.stop().await;
    assert_eq!(gw.stored_keys().active, kid, "stored, not only in memory");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_rotate_adds_a_key_and_old_tokens_still_verify() {
    let mut gw = Gateway::start().await;
    let (_, old) = alice_browser(&gw).await;
    let before = gw.keys();
    gw.stop().await;

    let out = gw.cli(&["keys", "rotate"], None).await;
    assert!(out.ok(), "keys rotate failed: {out:?}");
    let after = gw.stored_keys();
    assert_eq!(after.keys.len(), before.keys.len() + 1, "{:?}", after.raw);
    assert_ne!(after.active, before.active, "the new key is not active");
    assert!(
        after.keys.iter().any(|k| k.kid == before.active),
        "the old key was dropped"
    );

    gw.start_again().await;
    let echo = assert_token_accepted(&gw, &old.token, "token signed by the previous key").await;
    assert_eq!(echo.header("remote-user"), Some("alice"));
    let (_, new) = alice_browser(&gw).await;
    assert_eq!(jwt_parts(&new.token).0["kid"], after.active.as_str());

    // The retired key verifies only what it signed before it was retired: a token minted with
    // it afterwards (a leaked old key) is refused, and so is one backdated to live longer
    // than any real session.
    let old_key = before.active_key().clone();
    let mut claims = claims_of(&old.token);
    claims["iat"] = json!(now() + 5);
    claims["exp"] = json!(now() + 3600);
    let t = sign(
        Algorithm::HS256,
        Some(&old_key.kid),
        &claims,
        &old_key.secret,
    );
    assert_token_refused(&gw, &t, "minted with the retired key after its retirement").await;
    let mut claims = claims_of(&old.token);
    claims["exp"] = json!(now() + 400 * 24 * 3600);
    let t = sign(
        Algorithm::HS256,
        Some(&old_key.kid),
        &claims,
        &old_key.secret,
    );
    assert_token_refused(&gw, &t, "retired key, backdated, living past every session").await;
    // A leaked retired key minting a back-dated session inside every window: a sid the
    // gateway never recorded, or the recorded one for another user, is refused.
    let mut claims = claims_of(&old.token);
    claims["sid"] = json!("minted-with-a-leaked-key");
    claims["iat"] = json!(claims["iat"].as_i64().unwrap() - 30);
    claims["iat_ms"] = json!(claims["iat"].as_i64().unwrap() * 1000);
    let t = sign(
        Algorithm::HS256,
        Some(&old_key.kid),
        &claims,
        &old_key.secret,
    );
    assert_token_refused(&gw, &t, "retired key, made-up sid, back-dated").await;
    let mut claims = claims_of(&old.token);
    claims["sub"] = json!("bob");
    let t = sign(
        Algorithm::HS256,
        Some(&old_key.kid),
        &claims,
        &old_key.secret,
    );
    assert_token_refused(&gw, &t, "retired key, a recorded sid for another user").await;
    assert_token_accepted(&gw, &old.token, "the real session of the retired key").await;
}

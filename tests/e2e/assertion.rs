//! Identity assertions: a short-lived EdDSA JWT for apps that opt in, verifiable with the
//! public keys at `/.portcullis/jwks.json`.

use crate::harness::*;
use base64::Engine;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;

const ASSERTED: &str = EXTRA_APP;

async fn gateway_with_asserting_app() -> Gateway {
    let gw = Gateway::prepare(Setup::default()).await;
    let extra = format!(
        "\n[[apps]]\nname = \"reports\"\nhosts = [\"{ASSERTED}\"]\nupstream = \"{}\"\nflow = \"{FLOW}\"\nassertion = true\n",
        gw.upstream.addr
    );
    let mut text = std::fs::read_to_string(&gw.config_path).unwrap();
    text.push_str(&extra);
    std::fs::write(&gw.config_path, text).unwrap();
    gw.launch().await
}

fn jwk_key(jwks: &Value, kid: &str) -> DecodingKey {
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} not in {jwks}"));
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key["x"].as_str().unwrap())
        .unwrap();
    DecodingKey::from_ed_der(&x)
}

#[tokio::test(flavor = "multi_thread")]
async fn opted_in_app_receives_a_verifiable_assertion_for_its_audience() {
    let gw = gateway_with_asserting_app().await;
    let b = gw.browser();
    api_sign_in_on(&b, ASSERTED, None, "alice", ALICE_PW).await;
    let echo = b.get_json(&b.url_on(ASSERTED, "/r")).await.echo();
    let token = echo
        .header("x-portcullis-assertion")
        .unwrap_or_else(|| panic!("no assertion header: {:?}", echo.headers))
        .to_string();
    let jwks = b.get_json(&b.url("/.portcullis/jwks.json")).await.json();
    let header = decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&["reports"]);
    v.set_issuer(&["portcullis"]);
    let claims = decode::<Value>(&token, &jwk_key(&jwks, header.kid.as_deref().unwrap()), &v)
        .expect("assertion verifies with the published key")
        .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["groups"], serde_json::json!(["staff", "ops"]));
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=60).contains(&lifetime), "short-lived: {lifetime}s");

    // Another audience must not accept it.
    let mut other = Validation::new(Algorithm::EdDSA);
    other.set_audience(&["demo"]);
    assert!(decode::<Value>(
        &token,
        &jwk_key(&jwks, header.kid.as_deref().unwrap()),
        &other
    )
    .is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_without_assertion_get_none_and_clients_cannot_forge_one() {
    let gw = gateway_with_asserting_app().await;
    let b = gw.browser();
    api_sign_in(&b, "alice", ALICE_PW).await;
    api_sign_in_on(&b, ASSERTED, None, "alice", ALICE_PW).await;
    let plain = b
        .send(
            b.http
                .get(b.url("/x"))
                .header("X-Portcullis-Assertion", "forged"),
        )
        .await
        .echo();
    assert_eq!(
        plain.header("x-portcullis-assertion"),
        None,
        "{:?}",
        plain.headers
    );
    let asserted = b
        .send(
            b.http
                .get(b.url_on(ASSERTED, "/x"))
                .header("X-Portcullis-Assertion", "forged"),
        )
        .await
        .echo();
    assert_ne!(asserted.header("x-portcullis-assertion"), Some("forged"));
}

//! Attacks on the token-side endpoints (token, introspection, revocation, userinfo, discovery, JWKS) over
//! HTTP, on SQLite and PostgreSQL: each test is named after what it stops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::flows::{claims, code_flow, introspect, register_app};
use common::users::{add_user, login};
use common::{TOKEN_CONFIG, TestDb, TestServer};
use consent_ledger::keys::{Algorithm, KeyMaterial};
use serde_json::{Value, json};

const OIDC_CONFIG: &str = r#"
admin_token = "admin-token-admin-token-admin-token-0123"
default_audience = "https://api.example"
[[scopes]]
name = "openid"
description = "Sign you in"
[[scopes]]
name = "email"
description = "See your email address"
"#;

async fn machine_client(s: &TestServer, id: &str, extra: Value) -> String {
    let mut body = json!({
        "client_id": id, "name": "Billing", "kind": "first_party", "audience": "machine",
        "grant_types": ["client_credentials"], "scopes": ["read", "write"],
        "resources": ["https://api.example", "https://billing.example"],
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    s.register(body).await.unwrap()
}

async fn access_token(s: &TestServer, id: &str, secret: &str) -> String {
    let (status, _, body) = s
        .post_form(
            "/token",
            Some((id, secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A signed-in user's code flow for `openid email` by a registered web client `printer`.
async fn signed_in_tokens(s: &TestServer, extra: Value) -> (String, Value) {
    let secret = register_app(s, "printer", &["openid", "email"], extra).await;
    add_user(
        s,
        "ann",
        "correct horse battery",
        json!({"email": "ann@example.com"}),
    )
    .await;
    let cookie = login(s, "ann", "correct horse battery").await;
    let body = code_flow(s, &cookie, ("printer", &secret), "openid email", &[]).await;
    (secret, body)
}

async fn userinfo_status(s: &TestServer, bearer: &str) -> u16 {
    s.http
        .get(format!("{}/userinfo", s.base))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

on_both_stores!(
    id_token_is_refused_as_bearer_token_at_userinfo_and_introspection,
    revoking_another_clients_access_token_is_a_silent_no_op,
    client_assertion_cannot_be_replayed_within_the_expiry_leeway,
    unknown_client_and_wrong_secret_are_indistinguishable,
);

async fn id_token_is_refused_as_bearer_token_at_userinfo_and_introspection(db: TestDb) {
    let s = TestServer::start(&db, OIDC_CONFIG).await;
    let (secret, body) = signed_in_tokens(&s, json!({})).await;
    let access = body["access_token"].as_str().unwrap();
    let id_token = body["id_token"].as_str().unwrap();
    assert_eq!(userinfo_status(&s, access).await, 200);
    assert_eq!(userinfo_status(&s, id_token).await, 401);
    assert_eq!(
        introspect(&s, ("printer", &secret), id_token).await,
        json!({"active": false})
    );
    assert_eq!(introspect(&s, ("printer", &secret), access).await["active"], true);
}

async fn revoking_another_clients_access_token_is_a_silent_no_op(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let a = machine_client(&s, "a", json!({})).await;
    let b = machine_client(&s, "b", json!({})).await;
    let at = access_token(&s, "a", &a).await;
    // The same answer an unknown token gets, and the token stays active.
    let (status, _, body) = s.post_form("/revoke", Some(("b", &b)), &[("token", &at)]).await;
    assert_eq!((status, body), (200, json!("")));
    assert_eq!(introspect(&s, ("a", &a), &at).await["active"], true);
    let (status, _, _) = s
        .post_form("/revoke", Some(("b", &b)), &[("token", "unknown")])
        .await;
    assert_eq!(status, 200);
}

async fn client_assertion_cannot_be_replayed_within_the_expiry_leeway(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let key = KeyMaterial::generate(Algorithm::ES256).unwrap();
    s.register(json!({
        "client_id": "jwt", "name": "J", "grant_types": ["client_credentials"], "scopes": ["read"],
        "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [key.public_jwk]},
    }))
    .await;
    // Already past `exp`, still inside the 30 s leeway: accepted once, never twice.
    let now = consent_ledger::app::now();
    let assertion = key
        .sign(
            "JWT",
            &json!({"iss": "jwt", "sub": "jwt", "aud": format!("{}/token", s.base), "exp": now - 5, "jti": "late"}),
        )
        .unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion.as_str()),
    ];
    let (status, _, body) = s.post_form("/token", None, &form).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = s.post_form("/token", None, &form).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
}

async fn unknown_client_and_wrong_secret_are_indistinguishable(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    machine_client(&s, "known", json!({})).await;
    let form = [("grant_type", "client_credentials")];
    let (status_known, headers_known, body_known) =
        s.post_form("/token", Some(("known", "wrong")), &form).await;
    let (status_unknown, headers_unknown, body_unknown) =
        s.post_form("/token", Some(("nobody", "wrong")), &form).await;
    assert_eq!(status_known, 401);
    assert_eq!(
        (status_known, &body_known, &headers_known["www-authenticate"]),
        (
            status_unknown,
            &body_unknown,
            &headers_unknown["www-authenticate"]
        )
    );
    // RFC 6749 §5.2 in the challenge too, so a client reports the OAuth error (RFC 6750 §3 style).
    let challenge = headers_known["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Basic realm=\"consent-ledger\"")
            && challenge.contains("error=\"invalid_client\"")
            && challenge.contains("error_description=\"client authentication failed\""),
        "{challenge}"
    );
    // A client registered for another method: the same answer again.
    let (status, _, body) = s
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "known"),
                ("client_secret", "wrong"),
            ],
        )
        .await;
    assert_eq!((status, &body), (401, &body_known));
}

#[tokio::test]
async fn oversized_body_error_names_the_limit_in_force() {
    let s = TestServer::start(&TestDb::sqlite(), TOKEN_CONFIG).await;
    let filler = "x".repeat(20 * 1024);
    let (status, _, body) = s
        .post_form(
            "/token",
            None,
            &[("grant_type", "client_credentials"), ("pad", &filler)],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("16384"), "{description}");
}

#[tokio::test]
async fn admin_token_of_another_length_is_refused() {
    let s = TestServer::start(&TestDb::sqlite(), TOKEN_CONFIG).await;
    for token in [
        "admin",
        "admin-token-admin-token-admin-token-012",
        "admin-token-admin-token-admin-token-01234",
    ] {
        let r = s
            .http
            .get(format!("{}/admin/clients", s.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{token}");
    }
    let _ = claims;
}

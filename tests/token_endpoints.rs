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
    introspection_shows_a_caller_only_its_own_tokens_or_those_for_its_resources,
    public_client_cannot_introspect,
    registration_refuses_dangerous_redirect_uris,
    both_discovery_documents_are_the_same_and_name_id_token_algorithms,
    id_tokens_are_rs256_by_default_and_per_client_otherwise,
    rotation_replaces_the_id_token_key_too,
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
    let now = s.app.now();
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

/// Without the admin token, a malformed body is not parsed: the answer is 401 whatever is sent, so the
/// admin API tells an unauthenticated caller nothing about what it accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_checks_the_token_before_reading_the_body() {
    let s = TestServer::start(&TestDb::sqlite(), TOKEN_CONFIG).await;
    for (content_type, body) in [
        ("application/json", "{not json"),
        ("text/plain", "hello"),
        ("application/json", r#"{"client_id": 5}"#),
    ] {
        for path in ["/admin/clients", "/admin/clients/x/disable"] {
            let r = s
                .http
                .post(format!("{}{path}", s.base))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{path} {content_type} {body}");
        }
    }
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
}

async fn introspection_shows_a_caller_only_its_own_tokens_or_those_for_its_resources(db: TestDb) {
    let s = TestServer::start(&db, OIDC_CONFIG).await;
    let (printer, body) = signed_in_tokens(&s, json!({})).await;
    let access = body["access_token"].as_str().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    // Another confidential client, with the same resources but not a resource server: sees nothing.
    let other = machine_client(&s, "other", json!({"scopes": ["openid"]})).await;
    for t in [access, refresh] {
        let (status, headers, r) = s
            .post_form("/introspect", Some(("other", &other)), &[("token", t)])
            .await;
        assert_eq!((status, r), (200, json!({"active": false})));
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["pragma"], "no-cache");
    }
    // The resource server the access token is for sees it, but never the client's refresh token.
    let api = machine_client(
        &s,
        "api",
        json!({"scopes": ["openid"], "resources": ["https://api.example"], "resource_server": true}),
    )
    .await;
    let r = introspect(&s, ("api", &api), access).await;
    assert_eq!(
        (r["active"].as_bool(), r["client_id"].as_str()),
        (Some(true), Some("printer"))
    );
    assert_eq!(
        introspect(&s, ("api", &api), refresh).await,
        json!({"active": false})
    );
    // A resource server for another audience sees nothing.
    let pay = machine_client(
        &s,
        "pay",
        json!({"scopes": ["openid"], "resources": ["https://payments.example"], "resource_server": true}),
    )
    .await;
    assert_eq!(
        introspect(&s, ("pay", &pay), access).await,
        json!({"active": false})
    );
    // The client itself sees both.
    assert_eq!(
        introspect(&s, ("printer", &printer), access).await["active"],
        true
    );
    assert_eq!(
        introspect(&s, ("printer", &printer), refresh).await["active"],
        true
    );
}

async fn public_client_cannot_introspect(db: TestDb) {
    let s = TestServer::start(&db, OIDC_CONFIG).await;
    let (_, body) = signed_in_tokens(&s, json!({})).await;
    s.register(json!({
        "client_id": "spa", "name": "SPA", "redirect_uris": ["https://spa.example/cb"],
        "grant_types": ["authorization_code"], "scopes": ["openid"], "token_endpoint_auth_method": "none",
    }))
    .await;
    for t in ["access_token", "refresh_token"] {
        let (status, _, r) = s
            .post_form(
                "/introspect",
                None,
                &[("client_id", "spa"), ("token", body[t].as_str().unwrap())],
            )
            .await;
        assert_eq!(
            (status, r["error"].as_str()),
            (401, Some("invalid_client")),
            "{t}"
        );
        assert!(r.get("sub").is_none());
    }
    // Nor be named a resource server.
    let r = s
        .http
        .post(format!("{}/admin/clients", s.base))
        .bearer_auth("admin-token-admin-token-admin-token-0123")
        .json(
            &json!({"client_id": "rs", "name": "RS", "token_endpoint_auth_method": "none",
                      "resources": ["https://api.example"], "resource_server": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

async fn registration_refuses_dangerous_redirect_uris(db: TestDb) {
    let s = TestServer::start(&db, OIDC_CONFIG).await;
    let register = |id: &str, uri: &str, method: &str| {
        let body = json!({
            "client_id": id, "name": "App", "redirect_uris": [uri],
            "grant_types": ["authorization_code"], "scopes": ["openid"], "token_endpoint_auth_method": method,
        });
        let s = &s;
        async move {
            let r = s
                .http
                .post(format!("{}/admin/clients", s.base))
                .bearer_auth("admin-token-admin-token-admin-token-0123")
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    for (i, uri) in [
        "javascript:alert(1)//",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "*",
        "https://*.app.example/cb",
        "https://app.example/cb#token",
        "http://app.example/cb",
        "cb",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = register(&format!("bad{i}"), uri, "client_secret_basic").await;
        assert_eq!(status, 400, "{uri}: {body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(&format!("{uri:?}")), "{description}");
    }
    // A private-use scheme is for native (public) clients only.
    assert_eq!(
        register("web", "com.example.app:/cb", "client_secret_basic")
            .await
            .0,
        400
    );
    for (i, uri) in [
        "https://app.example/cb",
        "http://127.0.0.1:49152/cb",
        "http://[::1]/cb",
        "http://localhost:8080/cb",
        "com.example.app:/oauth2redirect",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = register(&format!("good{i}"), uri, "none").await;
        assert_eq!(status, 201, "{uri}: {body}");
    }
}

async fn both_discovery_documents_are_the_same_and_name_id_token_algorithms(db: TestDb) {
    let s = TestServer::start(&db, OIDC_CONFIG).await;
    let oauth = s.get_json("/.well-known/oauth-authorization-server").await;
    let openid = s.get_json("/.well-known/openid-configuration").await;
    assert_eq!(oauth, openid);
    assert_eq!(
        oauth["id_token_signing_alg_values_supported"],
        json!(["RS256", "ES256", "EdDSA"])
    );
    assert_eq!(oauth["userinfo_endpoint"], format!("{}/userinfo", s.base));
    assert!(
        !oauth["introspection_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("none"))
    );
}

/// Verifies an ID token with nothing but the published JWKS and the algorithm its header names, as an
/// OpenID client does; returns the algorithm.
async fn verify_id_token(s: &TestServer, jwt: &str, client_id: &str) -> String {
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(s.get_json("/jwks").await).unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid in the JWKS");
    assert_eq!(
        jwk.common.key_algorithm.map(|a| format!("{a:?}")),
        Some(format!("{:?}", header.alg))
    );
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[client_id]);
    v.set_issuer(&[&s.base]);
    jsonwebtoken::decode::<Value>(jwt, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &v).unwrap();
    format!("{:?}", header.alg)
}

async fn id_tokens_are_rs256_by_default_and_per_client_otherwise(db: TestDb) {
    let s = TestServer::start(&db, OIDC_CONFIG).await;
    let (_, body) = signed_in_tokens(&s, json!({})).await;
    let id = body["id_token"].as_str().unwrap();
    assert_eq!(verify_id_token(&s, id, "printer").await, "RS256");
    assert_eq!(claims(id)["aud"], "printer");
    // Access tokens keep the configured algorithm.
    let access = jsonwebtoken::decode_header(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(access.alg, jsonwebtoken::Algorithm::ES256);
    // The RS256 key is recorded like every key, and its private half is in the key directory.
    let keys = consent_ledger::keys::KeyRing::all(s.app.store.as_ref())
        .await
        .unwrap();
    let rsa = keys
        .iter()
        .find(|k| k.alg == "RS256")
        .expect("RS256 key recorded");
    let files: Vec<String> = std::fs::read_dir(&s.app.config.key_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.contains(&format!("{}.RS256.pk8", rsa.kid)), "{files:?}");
    let cookie = login(&s, "ann", "correct horse battery").await;
    for alg in ["ES256", "EdDSA"] {
        let id_client = format!("app-{alg}");
        let secret = register_app(
            &s,
            &id_client,
            &["openid"],
            json!({"id_token_signed_response_alg": alg}),
        )
        .await;
        let body = code_flow(&s, &cookie, (&id_client, &secret), "openid", &[]).await;
        assert_eq!(
            verify_id_token(&s, body["id_token"].as_str().unwrap(), &id_client).await,
            alg
        );
    }
    let jwks = s.get_json("/jwks").await;
    let mut algs: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    algs.sort_unstable();
    assert_eq!(algs, ["ES256", "EdDSA", "RS256"]);
    // Other algorithms are refused at registration.
    let r = s
        .http
        .post(format!("{}/admin/clients", s.base))
        .bearer_auth("admin-token-admin-token-admin-token-0123")
        .json(&json!({"client_id": "hs", "name": "HS", "id_token_signed_response_alg": "HS256"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .http
        .post(format!("{}/admin/clients", s.base))
        .bearer_auth("admin-token-admin-token-admin-token-0123")
        .json(&json!({"client_id": "none", "name": "None", "id_token_signed_response_alg": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

async fn rotation_replaces_the_id_token_key_too(db: TestDb) {
    let s = TestServer::start(&db, OIDC_CONFIG).await;
    let (secret, body) = signed_in_tokens(&s, json!({})).await;
    let old_id = body["id_token"].as_str().unwrap().to_owned();
    let old_kid = jsonwebtoken::decode_header(&old_id).unwrap().kid.unwrap();
    let new_access_key = s
        .app
        .keys
        .rotate(s.app.store.as_ref(), s.app.now())
        .await
        .unwrap();
    assert_eq!(new_access_key.alg, Algorithm::ES256);
    let cookie = login(&s, "ann", "correct horse battery").await;
    let body = code_flow(&s, &cookie, ("printer", &secret), "openid email", &[]).await;
    let new_id = body["id_token"].as_str().unwrap();
    assert_ne!(jsonwebtoken::decode_header(new_id).unwrap().kid.unwrap(), old_kid);
    assert_eq!(
        jsonwebtoken::decode_header(body["access_token"].as_str().unwrap())
            .unwrap()
            .kid
            .unwrap(),
        new_access_key.kid
    );
    // The retired keys stay published while their tokens live.
    assert_eq!(verify_id_token(&s, &old_id, "printer").await, "RS256");
    assert_eq!(verify_id_token(&s, new_id, "printer").await, "RS256");
    assert_eq!(s.get_json("/jwks").await["keys"].as_array().unwrap().len(), 4);
}

//! DPoP (RFC 9449) over HTTP, on SQLite and PostgreSQL: tokens bound to the client's key at the token
//! endpoint (every grant), refresh tokens of public clients bound too, server nonces, and /userinfo
//! accepting a bound token only with a proof by its key. Each defence is named after the attack it stops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::flows::{REDIRECT, claims, code_for, code_request, introspect, pkce, register_app};
use common::users::{add_user, login};
use common::{TOKEN_CONFIG, TestDb, TestServer};
use consent_ledger::keys::{Algorithm, KeyMaterial};
use projections::Event;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

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

/// A client's DPoP key pair.
struct DpopKey(KeyMaterial);

impl DpopKey {
    fn new() -> DpopKey {
        DpopKey(KeyMaterial::generate(Algorithm::ES256).unwrap())
    }

    /// The RFC 7638 thumbprint, computed here from the public JWK's required members.
    fn jkt(&self) -> String {
        let j = &self.0.public_jwk;
        let canonical = format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            j["crv"].as_str().unwrap(),
            j["x"].as_str().unwrap(),
            j["y"].as_str().unwrap()
        );
        B64.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// A proof with these claims (a fresh `jti` and `iat` unless given).
    fn sign(&self, claims: Value) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.0.public_jwk});
        let message = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &self.0.encoding_key,
            jsonwebtoken::Algorithm::ES256,
        )
        .unwrap();
        format!("{message}.{signature}")
    }

    /// A proof for `method` on the server's `path` at the server's current time.
    fn proof(&self, s: &TestServer, method: &str, path: &str, extra: Value) -> String {
        let mut claims = json!({
            "jti": consent_ledger::ids::id(), "htm": method, "htu": format!("{}{path}", s.base), "iat": s.now(),
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        self.sign(claims)
    }

    /// A proof for `token` at /userinfo.
    fn userinfo_proof(&self, s: &TestServer, token: &str) -> String {
        let ath = B64.encode(Sha256::digest(token.as_bytes()));
        self.proof(s, "GET", "/userinfo", json!({ "ath": ath }))
    }
}

/// POST /token with an optional proof and Basic credentials.
async fn token_request(
    s: &TestServer,
    basic: Option<(&str, &str)>,
    proof: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, HeaderMap, Value) {
    let mut req = s.http.post(format!("{}/token", s.base)).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap())
}

async fn machine_client(s: &TestServer, id: &str, extra: Value) -> String {
    let mut body = json!({
        "client_id": id, "name": "Billing", "kind": "first_party", "audience": "machine",
        "grant_types": ["client_credentials"], "scopes": ["read"],
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    s.register(body).await.unwrap()
}

async fn client_credentials(
    s: &TestServer,
    client: (&str, &str),
    proof: Option<&str>,
) -> (u16, HeaderMap, Value) {
    token_request(s, Some(client), proof, &[("grant_type", "client_credentials")]).await
}

fn error(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {body}"))
}

/// GET /userinfo with `authorization` and an optional proof.
async fn userinfo(s: &TestServer, authorization: &str, proof: Option<&str>) -> (u16, Vec<String>, Value) {
    let mut req = s
        .http
        .get(format!("{}/userinfo", s.base))
        .header("Authorization", authorization);
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let challenges = r
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, challenges, body)
}

async fn events(s: &TestServer) -> Vec<Event> {
    s.app
        .store
        .read_from(1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.decode().unwrap().event)
        .collect()
}

on_both_stores!(
    a_proof_binds_the_access_token_to_the_key,
    dpop_proof_replay_is_refused,
    dpop_proof_for_another_url_is_refused,
    dpop_proof_without_the_servers_nonce_is_answered_with_one,
    client_registered_for_dpop_cannot_get_a_bearer_token,
    stolen_public_refresh_token_is_useless_without_its_key,
    confidential_clients_refresh_tokens_are_not_bound_but_their_access_tokens_are,
    bound_token_at_userinfo_needs_a_proof_by_its_key,
);

async fn a_proof_binds_the_access_token_to_the_key(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    // Discovery advertises the asymmetric algorithms a proof may use, and nothing symmetric.
    let algs =
        s.get_json("/.well-known/oauth-authorization-server").await["dpop_signing_alg_values_supported"]
            .clone();
    let algs: Vec<&str> = algs
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(algs.contains(&"ES256") && algs.contains(&"EdDSA"), "{algs:?}");
    assert!(
        !algs.iter().any(|a| a.starts_with("HS") || *a == "none"),
        "{algs:?}"
    );
    let secret = machine_client(&s, "billing", json!({})).await;
    let key = DpopKey::new();
    let proof = key.proof(&s, "POST", "/token", json!({}));
    let (status, _, body) = client_credentials(&s, ("billing", &secret), Some(&proof)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(claims(token)["cnf"], json!({"jkt": key.jkt()}));
    let seen = introspect(&s, ("billing", &secret), token).await;
    assert_eq!(seen["active"], true);
    assert_eq!(seen["token_type"], "DPoP");
    assert_eq!(seen["cnf"], json!({"jkt": key.jkt()}));
    // The ledger records the binding with the issuance.
    let issued: Vec<_> = events(&s)
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::TokenIssued(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(
        issued.last().unwrap().dpop_jkt.as_deref(),
        Some(key.jkt().as_str())
    );
    // Without a proof the same client still gets a plain Bearer token.
    let (status, _, body) = client_credentials(&s, ("billing", &secret), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap();
    assert!(claims(token).get("cnf").is_none());
    let seen = introspect(&s, ("billing", &secret), token).await;
    assert_eq!(seen["token_type"], "Bearer");
    assert!(seen.get("cnf").is_none());
}

async fn dpop_proof_replay_is_refused(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = machine_client(&s, "billing", json!({})).await;
    let key = DpopKey::new();
    let proof = key.proof(&s, "POST", "/token", json!({}));
    let (status, _, _) = client_credentials(&s, ("billing", &secret), Some(&proof)).await;
    assert_eq!(status, 200);
    s.advance(10);
    let (status, _, body) = client_credentials(&s, ("billing", &secret), Some(&proof)).await;
    assert_eq!((status, error(&body)), (400, "invalid_dpop_proof"), "{body}");
    // A fresh proof by the same key is fine.
    let proof = key.proof(&s, "POST", "/token", json!({}));
    let (status, _, _) = client_credentials(&s, ("billing", &secret), Some(&proof)).await;
    assert_eq!(status, 200);
}

async fn dpop_proof_for_another_url_is_refused(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = machine_client(&s, "billing", json!({})).await;
    let key = DpopKey::new();
    for (what, proof) in [
        (
            "another endpoint",
            key.proof(&s, "POST", "/introspect", json!({})),
        ),
        ("another method", key.proof(&s, "GET", "/token", json!({}))),
        (
            "another server",
            key.proof(&s, "POST", "/token", json!({"htu": "https://as.example/token"})),
        ),
        (
            "an old proof",
            key.proof(&s, "POST", "/token", json!({"iat": s.now() - 61})),
        ),
    ] {
        let (status, _, body) = client_credentials(&s, ("billing", &secret), Some(&proof)).await;
        assert_eq!(
            (status, error(&body)),
            (400, "invalid_dpop_proof"),
            "{what}: {body}"
        );
    }
    // The endpoint URL differing only in the scheme's case, or by a query, is the same URL.
    let base = s.base.replace("http://", "HTTP://");
    let proof = key.proof(&s, "POST", "/token", json!({"htu": format!("{base}/token?x=1")}));
    let (status, _, body) = client_credentials(&s, ("billing", &secret), Some(&proof)).await;
    assert_eq!(status, 200, "{body}");
}

async fn dpop_proof_without_the_servers_nonce_is_answered_with_one(db: TestDb) {
    let config = format!("{TOKEN_CONFIG}\n[dpop]\nrequire_nonce = true\nnonce_lifetime_seconds = 100\n");
    let s = TestServer::start(&db, &config).await;
    let secret = machine_client(&s, "billing", json!({})).await;
    let key = DpopKey::new();
    let (status, headers, body) = client_credentials(
        &s,
        ("billing", &secret),
        Some(&key.proof(&s, "POST", "/token", json!({}))),
    )
    .await;
    assert_eq!((status, error(&body)), (400, "use_dpop_nonce"), "{body}");
    let nonce = headers["dpop-nonce"].to_str().unwrap().to_owned();
    let (status, headers, body) = client_credentials(
        &s,
        ("billing", &secret),
        Some(&key.proof(&s, "POST", "/token", json!({ "nonce": nonce }))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert!(headers.contains_key("dpop-nonce"), "every answer carries a nonce");
    // A nonce two periods old is stale: the answer asks again, with a fresh one.
    s.advance(200);
    let (status, headers, body) = client_credentials(
        &s,
        ("billing", &secret),
        Some(&key.proof(&s, "POST", "/token", json!({ "nonce": nonce }))),
    )
    .await;
    assert_eq!((status, error(&body)), (400, "use_dpop_nonce"), "{body}");
    assert_ne!(headers["dpop-nonce"].to_str().unwrap(), nonce);
    // A made-up nonce is not accepted either.
    let (status, _, body) = client_credentials(
        &s,
        ("billing", &secret),
        Some(&key.proof(&s, "POST", "/token", json!({ "nonce": "guessed" }))),
    )
    .await;
    assert_eq!((status, error(&body)), (400, "use_dpop_nonce"), "{body}");
}

async fn client_registered_for_dpop_cannot_get_a_bearer_token(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = machine_client(&s, "billing", json!({"dpop_bound_access_tokens": true})).await;
    let (status, _, body) = client_credentials(&s, ("billing", &secret), None).await;
    assert_eq!((status, error(&body)), (400, "invalid_dpop_proof"), "{body}");
    let key = DpopKey::new();
    let proof = key.proof(&s, "POST", "/token", json!({}));
    let (status, _, body) = client_credentials(&s, ("billing", &secret), Some(&proof)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    // The setting is refused with the implicit grant, whose tokens never see a proof.
    let r = s
        .http
        .post(format!("{}/admin/clients", s.base))
        .bearer_auth("admin-token-admin-token-admin-token-0123")
        .json(&json!({
            "client_id": "spa", "name": "SPA", "redirect_uris": [REDIRECT], "grant_types": ["implicit"],
            "scopes": ["read"], "token_endpoint_auth_method": "none", "dpop_bound_access_tokens": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// A signed-in user's code flow for a public client `spa`, redeemed with `proof`.
async fn public_code_flow(s: &TestServer, proof: impl Fn() -> Option<String>) -> Value {
    s.register(json!({
        "client_id": "spa", "name": "SPA", "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"], "scopes": ["openid", "email"],
        "token_endpoint_auth_method": "none",
    }))
    .await;
    add_user(
        s,
        "ann",
        "correct horse battery",
        json!({"email": "ann@example.com"}),
    )
    .await;
    let cookie = login(s, "ann", "correct horse battery").await;
    let p = pkce();
    let params = code_for(s, &cookie, &code_request("spa", "openid email", &p), &[]).await;
    let (status, _, body) = token_request(
        s,
        None,
        proof().as_deref(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", &params["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &p.verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn refresh(
    s: &TestServer,
    basic: Option<(&str, &str)>,
    token: &str,
    proof: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if basic.is_none() {
        form.push(("client_id", "spa"));
    }
    let (status, _, body) = token_request(s, basic, proof, &form).await;
    (status, body)
}

async fn stolen_public_refresh_token_is_useless_without_its_key(db: TestDb) {
    let s = TestServer::start(&db, OIDC_CONFIG).await;
    let key = DpopKey::new();
    let body = public_code_flow(&s, || Some(key.proof(&s, "POST", "/token", json!({})))).await;
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
    let first = body["refresh_token"].as_str().unwrap().to_owned();

    // The thief has the token but not the key: without a proof, or with a proof by its own key.
    let (status, body) = refresh(&s, None, &first, None).await;
    assert_eq!((status, error(&body)), (400, "invalid_dpop_proof"), "{body}");
    let thief = DpopKey::new();
    let (status, body) = refresh(
        &s,
        None,
        &first,
        Some(&thief.proof(&s, "POST", "/token", json!({}))),
    )
    .await;
    assert_eq!((status, error(&body)), (400, "invalid_grant"), "{body}");

    // The client, with its key, refreshes; the successor is bound to the same key.
    let (status, body) = refresh(
        &s,
        None,
        &first,
        Some(&key.proof(&s, "POST", "/token", json!({}))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
    let second = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = refresh(&s, None, &second, None).await;
    assert_eq!((status, error(&body)), (400, "invalid_dpop_proof"), "{body}");
    let (status, body) = refresh(
        &s,
        None,
        &second,
        Some(&thief.proof(&s, "POST", "/token", json!({}))),
    )
    .await;
    assert_eq!((status, error(&body)), (400, "invalid_grant"), "{body}");
    let (status, body) = refresh(
        &s,
        None,
        &second,
        Some(&key.proof(&s, "POST", "/token", json!({}))),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The thief's attempts did not count as reuse: the grant is still alive for its client.
    let third = body["refresh_token"].as_str().unwrap();
    let (status, body) = refresh(&s, None, third, Some(&key.proof(&s, "POST", "/token", json!({})))).await;
    assert_eq!(status, 200, "{body}");
    let bound: Vec<_> = events(&s)
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::RefreshTokenIssued(r) => Some(r.dpop_jkt),
            _ => None,
        })
        .collect();
    assert_eq!(bound, vec![Some(key.jkt()); 4]);
}

async fn confidential_clients_refresh_tokens_are_not_bound_but_their_access_tokens_are(db: TestDb) {
    let s = TestServer::start(&db, OIDC_CONFIG).await;
    let secret = register_app(&s, "printer", &["openid", "email"], json!({})).await;
    add_user(&s, "ann", "correct horse battery", json!({})).await;
    let cookie = login(&s, "ann", "correct horse battery").await;
    let p = pkce();
    let params = code_for(&s, &cookie, &code_request("printer", "openid", &p), &[]).await;
    let key = DpopKey::new();
    let (status, _, body) = token_request(
        &s,
        Some(("printer", &secret)),
        Some(&key.proof(&s, "POST", "/token", json!({}))),
        &[
            ("grant_type", "authorization_code"),
            ("code", &params["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &p.verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    // RFC 9449 §5: the refresh token is bound to the client's credentials, not to the key.
    let (status, body) = refresh(
        &s,
        Some(("printer", &secret)),
        body["refresh_token"].as_str().unwrap(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
}

async fn bound_token_at_userinfo_needs_a_proof_by_its_key(db: TestDb) {
    let s = TestServer::start(&db, OIDC_CONFIG).await;
    let key = DpopKey::new();
    let body = public_code_flow(&s, || Some(key.proof(&s, "POST", "/token", json!({})))).await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    let dpop = format!("DPoP {token}");

    let (status, _, claims) = userinfo(&s, &dpop, Some(&key.userinfo_proof(&s, &token))).await;
    assert_eq!(status, 200, "{claims}");
    assert_eq!(claims["email"], "ann@example.com");

    // A stolen bound token presented as a Bearer token.
    let (status, challenges, _) = userinfo(&s, &format!("Bearer {token}"), None).await;
    assert_eq!(status, 401);
    assert!(
        challenges[0].starts_with("Bearer error=\"invalid_token\""),
        "{challenges:?}"
    );
    assert!(challenges[1].starts_with("DPoP algs="), "{challenges:?}");
    // With the DPoP scheme but no proof, a proof by another key, or a proof for another token.
    let (status, challenges, _) = userinfo(&s, &dpop, None).await;
    assert_eq!(status, 401);
    assert!(
        challenges[1].starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{challenges:?}"
    );
    let thief = DpopKey::new();
    let (status, challenges, _) = userinfo(&s, &dpop, Some(&thief.userinfo_proof(&s, &token))).await;
    assert_eq!(status, 401);
    assert!(
        challenges[1].starts_with("DPoP error=\"invalid_token\""),
        "{challenges:?}"
    );
    let wrong_ath = key.proof(
        &s,
        "GET",
        "/userinfo",
        json!({"ath": B64.encode(Sha256::digest(b"another token"))}),
    );
    let (status, challenges, _) = userinfo(&s, &dpop, Some(&wrong_ath)).await;
    assert_eq!(status, 401);
    assert!(
        challenges[1].starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{challenges:?}"
    );
    // A proof is good once.
    let proof = key.userinfo_proof(&s, &token);
    assert_eq!(userinfo(&s, &dpop, Some(&proof)).await.0, 200);
    assert_eq!(userinfo(&s, &dpop, Some(&proof)).await.0, 401);

    // An unbound token is not made DPoP by its scheme.
    s.register(json!({
        "client_id": "web", "name": "Web", "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code"], "scopes": ["openid", "email"],
        "token_endpoint_auth_method": "none",
    }))
    .await;
    let cookie = login(&s, "ann", "correct horse battery").await;
    let p = pkce();
    let params = code_for(&s, &cookie, &code_request("web", "openid email", &p), &[]).await;
    let (status, _, body) = token_request(
        &s,
        None,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "web"),
            ("code", &params["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &p.verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let bearer = body["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&s, &format!("Bearer {bearer}"), None).await.0, 200);
    let (status, challenges, _) = userinfo(
        &s,
        &format!("DPoP {bearer}"),
        Some(&key.userinfo_proof(&s, bearer)),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        challenges[1].starts_with("DPoP error=\"invalid_token\""),
        "{challenges:?}"
    );
}

//! The token API over real HTTP, on SQLite and PostgreSQL: discovery, every client authentication
//! method, client credentials, JWT verification against the JWKS, introspection, revocation, rotation
//! and the error responses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TOKEN_CONFIG, TestDb, TestServer};
use consent_ledger::keys::{Algorithm, KeyMaterial};
use consent_ledger::store;
use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};
use projections::clients::Client;
use serde_json::{Value, json};

async fn machine_client(s: &TestServer, id: &str) -> String {
    s.register(json!({
        "client_id": id, "name": "Billing", "kind": "first_party", "audience": "machine",
        "grant_types": ["client_credentials"], "scopes": ["read", "write"],
        "resources": ["https://api.example", "https://billing.example"],
    }))
    .await
    .unwrap()
}

async fn token(s: &TestServer, id: &str, secret: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(extra);
    let (status, _, body) = s.post_form("/token", Some((id, secret)), &form).await;
    (status, body)
}

/// Verifies `jwt` with nothing but the published JWKS, as a resource server would.
async fn verify_with_jwks(s: &TestServer, jwt: &str, audience: &str) -> Value {
    let jwks: JwkSet = serde_json::from_value(s.get_json("/jwks").await).unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid published in the JWKS");
    let mut v = Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[audience]);
    v.set_issuer(&[&s.base]);
    jsonwebtoken::decode::<Value>(jwt, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .unwrap()
        .claims
}

async fn discovery_lists_what_is_supported(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let m = s.get_json(path).await;
        assert_eq!(m["issuer"], s.base);
        assert_eq!(m["token_endpoint"], format!("{}/token", s.base));
        assert_eq!(m["jwks_uri"], format!("{}/jwks", s.base));
        assert_eq!(
            m["grant_types_supported"],
            json!([
                "client_credentials",
                "authorization_code",
                "refresh_token",
                "implicit",
                "password",
                "urn:ietf:params:oauth:grant-type:token-exchange",
                "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "urn:ietf:params:oauth:grant-type:device_code",
                "urn:openid:params:grant-type:ciba"
            ])
        );
        assert_eq!(
            m["device_authorization_endpoint"],
            format!("{}/device_authorization", s.base)
        );
        assert_eq!(m["scopes_supported"], json!(["admin", "read", "write"]));
        assert!(
            m["token_endpoint_auth_methods_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("private_key_jwt"))
        );
    }
    let jwks = s.get_json("/jwks").await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["alg"], "ES256");

    // Every path the OpenAPI document lists is routed.
    let doc = s.get_json("/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/token") && paths.contains_key("/admin/clients/{id}"));
    for path in paths.keys() {
        let r = s
            .http
            .get(format!("{}{}", s.base, path.replace("{id}", "x")))
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 404, "{path} is documented but not routed");
    }
}

async fn client_credentials_issues_a_verifiable_rfc9068_token_recorded_in_the_ledger(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = machine_client(&s, "billing").await;
    let (status, headers, body) = s
        .post_form(
            "/token",
            Some(("billing", &secret)),
            &[("grant_type", "client_credentials"), ("scope", "read write")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(
        (
            body["token_type"].as_str(),
            body["scope"].as_str(),
            body["expires_in"].as_i64()
        ),
        (Some("Bearer"), Some("read write"), Some(300))
    );
    let claims = verify_with_jwks(&s, body["access_token"].as_str().unwrap(), "https://api.example").await;
    assert_eq!(
        (claims["sub"].as_str(), claims["client_id"].as_str()),
        (Some("billing"), Some("billing"))
    );
    assert_eq!(claims["scope"], "read write");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );

    // The ledger holds the issuance, with its decision trail and policy version.
    let jti = claims["jti"].as_str().unwrap();
    let events = s.app.store.read_from(1, 100).await.unwrap();
    let issued = events
        .iter()
        .find(|e| e.event_type == "TokenIssued")
        .unwrap()
        .decode()
        .unwrap();
    let projections::Event::TokenIssued(t) = issued.event else {
        panic!()
    };
    assert_eq!(t.jti, jti);
    assert_eq!(t.policy_version.as_deref(), Some(s.app.policy().version.as_str()));
    assert_eq!(t.decision_trail["scopes"][0]["outcome"], "issued");
    assert!(
        !events.iter().any(|e| e.payload.contains(&secret)),
        "a secret reached the ledger"
    );

    // Defaults when no scope is asked; resources select the audience.
    let (_, body) = token(&s, "billing", &secret, &[]).await;
    assert_eq!(body["scope"], "read");
    let (status, body) = token(&s, "billing", &secret, &[("resource", "https://billing.example")]).await;
    assert_eq!(status, 200);
    verify_with_jwks(
        &s,
        body["access_token"].as_str().unwrap(),
        "https://billing.example",
    )
    .await;
    // Unknown and disallowed scopes are dropped; nothing left is invalid_scope.
    let (_, body) = token(&s, "billing", &secret, &[("scope", "read admin nope")]).await;
    assert_eq!(body["scope"], "read");
    let (status, body) = token(&s, "billing", &secret, &[("scope", "admin")]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
    let (status, body) = token(&s, "billing", &secret, &[("resource", "https://evil.example")]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")));
}

async fn every_client_authentication_method_accepts_the_right_proof_only(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = machine_client(&s, "basic").await;
    // client_secret_basic: right, wrong, unknown client.
    assert_eq!(token(&s, "basic", &secret, &[]).await.0, 200);
    let (status, headers, body) = s
        .post_form(
            "/token",
            Some(("basic", "wrong")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    assert_eq!(token(&s, "nobody", &secret, &[]).await.0, 401);
    // The registered method is the only one accepted.
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "basic"),
        ("client_secret", secret.as_str()),
    ];
    assert_eq!(s.post_form("/token", None, &form).await.0, 401);

    // client_secret_post.
    let post = s
        .register(json!({"client_id": "post", "name": "P", "grant_types": ["client_credentials"], "scopes": ["read"],
                         "token_endpoint_auth_method": "client_secret_post"}))
        .await
        .unwrap();
    let ok = [
        ("grant_type", "client_credentials"),
        ("client_id", "post"),
        ("client_secret", post.as_str()),
    ];
    assert_eq!(s.post_form("/token", None, &ok).await.0, 200);
    let bad = [
        ("grant_type", "client_credentials"),
        ("client_id", "post"),
        ("client_secret", "nope"),
    ];
    assert_eq!(s.post_form("/token", None, &bad).await.0, 401);
    // Two methods at once is a malformed request.
    let (status, _, body) = s.post_form("/token", Some(("post", &post)), &ok).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));

    // private_key_jwt (RFC 7523 §2.2): signature, audience, expiry and one use per jti.
    let key = KeyMaterial::generate(Algorithm::ES256).unwrap();
    let other = KeyMaterial::generate(Algorithm::ES256).unwrap();
    s.register(
        json!({"client_id": "jwt", "name": "J", "grant_types": ["client_credentials"], "scopes": ["read"],
                      "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [key.public_jwk]}}),
    )
    .await;
    let now = s.app.now();
    let assertion = |k: &KeyMaterial, aud: &str, exp: i64, jti: &str| {
        k.sign(
            "JWT",
            &json!({"iss": "jwt", "sub": "jwt", "aud": aud, "exp": exp, "jti": jti}),
        )
        .unwrap()
    };
    let with = |a: String| {
        vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            (
                "client_assertion_type".to_owned(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ),
            ("client_assertion".to_owned(), a),
        ]
    };
    let send = |form: Vec<(String, String)>| {
        let s = &s;
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            s.post_form("/token", None, &form).await
        }
    };
    let token_endpoint = format!("{}/token", s.base);
    let good = assertion(&key, &token_endpoint, now + 60, "a1");
    let (status, _, body) = send(with(good.clone())).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send(with(good)).await;
    assert_eq!(
        (status, body["error_description"].as_str()),
        (401, Some("client_assertion jti was already used"))
    );
    assert_eq!(
        send(with(assertion(&key, "https://elsewhere", now + 60, "a2")))
            .await
            .0,
        401
    );
    assert_eq!(
        send(with(assertion(&key, &token_endpoint, now - 120, "a3")))
            .await
            .0,
        401
    );
    assert_eq!(
        send(with(assertion(&other, &token_endpoint, now + 60, "a4")))
            .await
            .0,
        401
    );
    assert_eq!(send(with(assertion(&key, &s.base, now + 60, "a5"))).await.0, 200);
}

async fn introspection_and_revocation_follow_the_ledger(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let a = machine_client(&s, "a").await;
    // b introspects a's tokens as the resource server they are meant for (RFC 7662 §4).
    let b = s
        .register(json!({
            "client_id": "b", "name": "API", "grant_types": ["client_credentials"], "scopes": ["read"],
            "resources": ["https://api.example"], "resource_server": true,
        }))
        .await
        .unwrap();
    let (_, body) = token(&s, "a", &a, &[]).await;
    let at = body["access_token"].as_str().unwrap().to_owned();

    let introspect = |who: (&'static str, String), t: String| {
        let s = &s;
        async move {
            s.post_form("/introspect", Some((who.0, &who.1)), &[("token", &t)])
                .await
        }
    };
    let (status, _, r) = introspect(("b", b.clone()), at.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            r["active"].as_bool(),
            r["client_id"].as_str(),
            r["scope"].as_str()
        ),
        (Some(true), Some("a"), Some("read"))
    );
    // Only authenticated clients may ask.
    assert_eq!(s.post_form("/introspect", None, &[("token", &at)]).await.0, 401);
    // Garbage and tokens signed by a key the server does not know are inactive.
    assert_eq!(
        introspect(("b", b.clone()), "not.a.jwt".into()).await.2,
        json!({"active": false})
    );
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&at)
        .unwrap()
        .claims;
    let forged = KeyMaterial::generate(Algorithm::ES256)
        .unwrap()
        .sign("at+jwt", &claims)
        .unwrap();
    assert_eq!(
        introspect(("b", b.clone()), forged).await.2,
        json!({"active": false})
    );

    // Another client may not revoke it (RFC 7009 §2.2: 200, and nothing changes); the owner may;
    // unknown tokens answer 200.
    let (status, _, _) = s.post_form("/revoke", Some(("b", &b)), &[("token", &at)]).await;
    assert_eq!(status, 200);
    assert_eq!(introspect(("b", b.clone()), at.clone()).await.2["active"], true);
    assert_eq!(
        s.post_form("/revoke", Some(("a", &a)), &[("token", &at)]).await.0,
        200
    );
    assert_eq!(
        introspect(("b", b.clone()), at.clone()).await.2,
        json!({"active": false})
    );
    assert_eq!(
        s.post_form("/revoke", Some(("a", &a)), &[("token", "unknown")])
            .await
            .0,
        200
    );
    assert_eq!(
        s.post_form("/revoke", Some(("a", &a)), &[("token", &at)]).await.0,
        200
    );

    // A disabled client can no longer authenticate and its tokens turn inactive.
    let (_, body) = token(&s, "a", &a, &[]).await;
    let at2 = body["access_token"].as_str().unwrap().to_owned();
    let r = s
        .http
        .post(format!("{}/admin/clients/a/disable", s.base))
        .bearer_auth("admin-token-admin-token-admin-token-0123")
        .json(&json!({"reason": "compromised"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        introspect(("b", b.clone()), at2).await.2,
        json!({"active": false})
    );
    assert_eq!(token(&s, "a", &a, &[]).await.0, 401);
    assert!(matches!(
        consent_ledger::audit::verify::verify(s.app.store.as_ref(), None)
            .await
            .unwrap(),
        consent_ledger::audit::verify::Verdict::Intact { .. }
    ));
    assert_eq!(
        consent_ledger::audit::replay::compare(s.app.store.as_ref())
            .await
            .unwrap(),
        vec![]
    );
}

async fn rotated_keys_keep_old_tokens_verifiable_and_sign_new_ones(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = machine_client(&s, "c").await;
    let (_, body) = token(&s, "c", &secret, &[]).await;
    let old = body["access_token"].as_str().unwrap().to_owned();
    let old_kid = jsonwebtoken::decode_header(&old).unwrap().kid.unwrap();

    let new_key = s
        .app
        .keys
        .rotate(s.app.store.as_ref(), s.app.now())
        .await
        .unwrap();
    let (_, body) = token(&s, "c", &secret, &[]).await;
    let new = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        jsonwebtoken::decode_header(&new).unwrap().kid.unwrap(),
        new_key.kid
    );
    assert_ne!(new_key.kid, old_kid);
    let jwks = s.get_json("/jwks").await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    verify_with_jwks(&s, &old, "https://api.example").await;
    verify_with_jwks(&s, &new, "https://api.example").await;
    let (_, _, r) = s
        .post_form("/introspect", Some(("c", &secret)), &[("token", &old)])
        .await;
    assert_eq!(r["active"], true);
}

async fn malformed_requests_get_rfc6749_errors_and_write_nothing(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = machine_client(&s, "m").await;
    s.register(json!({"client_id": "nocc", "name": "N", "grant_types": [], "scopes": ["read"]}))
        .await;
    let head = s.app.store.head().await.unwrap();
    let basic = Some(("m", secret.as_str()));
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], 400, "invalid_request"),
        (
            vec![("grant_type", "urn:example:unknown")],
            400,
            "unsupported_grant_type",
        ),
        // Supported by the server, but this client is not registered for it
        (vec![("grant_type", "password")], 400, "unauthorized_client"),
        (
            vec![("grant_type", "client_credentials"), ("scope", "read\"x")],
            400,
            "invalid_scope",
        ),
    ];
    for (form, status, error) in cases {
        let (st, headers, body) = s.post_form("/token", basic, &form).await;
        assert_eq!((st, body["error"].as_str()), (status, Some(error)), "{form:?}");
        assert_eq!(headers["cache-control"], "no-store");
    }
    let many = vec!["read"; 60].join(" ");
    let (st, _, body) = s
        .post_form(
            "/token",
            basic,
            &[
                ("grant_type", "client_credentials"),
                ("scope", &many.replace("read", "x").replace(' ', " y")),
            ],
        )
        .await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_scope")));
    // A client registered without the grant.
    let nocc = s.app.store.read_from(1, 100).await.unwrap();
    assert!(nocc.iter().any(|e| e.stream_id == "client-nocc"));

    let raw = |body: String, content_type: &'static str| {
        let s = &s;
        let secret = secret.clone();
        async move {
            let r = s
                .http
                .post(format!("{}/token", s.base))
                .basic_auth("m", Some(secret))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (st, body) = raw(
        "grant_type=client_credentials&grant_type=client_credentials".into(),
        "application/x-www-form-urlencoded",
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_request")));
    let (st, body) = raw(
        r#"{"grant_type":"client_credentials"}"#.into(),
        "application/json",
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_request")));
    let (st, body) = raw(
        format!("grant_type=client_credentials&pad={}", "x".repeat(40_000)),
        "application/x-www-form-urlencoded",
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_request")));
    assert_eq!(
        s.app.store.head().await.unwrap(),
        head,
        "a refused request wrote an event"
    );
}

async fn a_client_without_the_grant_is_unauthorized(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = s
        .register(json!({"client_id": "web", "name": "Web", "grant_types": [], "scopes": ["read"]}))
        .await
        .unwrap();
    let (status, body) = token(&s, "web", &secret, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
}

async fn a_stock_oauth2_client_works_from_discovery_alone(db: TestDb) {
    use oauth2::{AuthUrl, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl, basic::BasicClient};
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = machine_client(&s, "lib").await;
    let meta = s.get_json("/.well-known/oauth-authorization-server").await;
    let client = BasicClient::new(ClientId::new("lib".into()))
        .set_client_secret(ClientSecret::new(secret))
        .set_auth_uri(AuthUrl::new(format!("{}/unused", s.base)).unwrap())
        .set_token_uri(TokenUrl::new(meta["token_endpoint"].as_str().unwrap().into()).unwrap());
    let http = s.http.clone();
    let send = move |req: oauth2::HttpRequest| {
        let http = http.clone();
        async move {
            let (parts, body) = req.into_parts();
            let r = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut out = http::Response::builder().status(r.status().as_u16());
            for (k, v) in r.headers() {
                out = out.header(k, v);
            }
            Ok::<_, reqwest::Error>(out.body(r.bytes().await?.to_vec()).unwrap())
        }
    };
    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("write".into()))
        .request_async(&send)
        .await
        .unwrap();
    assert_eq!(token.scopes().unwrap()[0].as_str(), "write");
    let claims = verify_with_jwks(&s, token.access_token().secret(), "https://api.example").await;
    assert_eq!(claims["scope"], "write");
}

/// The admin API used to deserialise the persisted `ClientSpec` itself and accepted any scope; a client
/// registered with an undeclared scope got `invalid_scope` on every token request.
async fn the_admin_api_refuses_a_scope_the_configuration_does_not_declare(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let admin = |method: reqwest::Method, path: &str, body: Value| {
        s.http
            .request(method, format!("{}{path}", s.base))
            .bearer_auth("admin-token-admin-token-admin-token-0123")
            .json(&body)
            .send()
    };
    let r = admin(
        reqwest::Method::POST,
        "/admin/clients",
        json!({"client_id": "c", "name": "C", "grant_types": ["client_credentials"], "scopes": ["read", "delete"]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"].as_str().unwrap().contains("\"delete\""),
        "{body}"
    );
    assert!(
        store::get::<Client>(s.app.store.as_ref(), "c")
            .await
            .unwrap()
            .is_none()
    );

    // The JSON the API has always accepted still registers (a secret_hash in the body is ignored).
    let secret = s
        .register(
            json!({"client_id": "c", "name": "C", "grant_types": ["client_credentials"],
            "scopes": ["read"], "secret_hash": "00", "refresh_reuse_grace_seconds": 5}),
        )
        .await
        .unwrap();
    let stored: Client = store::get(s.app.store.as_ref(), "c").await.unwrap().unwrap();
    assert_eq!(stored.spec.token_endpoint_auth_method, "client_secret_basic");
    assert_eq!(stored.spec.refresh_reuse_grace_seconds, 5);
    assert_eq!(
        stored.spec.secret_hash,
        Some(consent_ledger::clients::hash_secret(&secret))
    );
    let r = admin(
        reqwest::Method::PUT,
        "/admin/clients/c",
        json!({"client_id": "c", "name": "C", "scopes": ["read", "delete"]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let stored: Client = store::get(s.app.store.as_ref(), "c").await.unwrap().unwrap();
    assert_eq!(stored.spec.scopes, vec!["read".to_owned()]);
}

on_both_stores!(
    the_admin_api_refuses_a_scope_the_configuration_does_not_declare,
    discovery_lists_what_is_supported,
    client_credentials_issues_a_verifiable_rfc9068_token_recorded_in_the_ledger,
    every_client_authentication_method_accepts_the_right_proof_only,
    introspection_and_revocation_follow_the_ledger,
    rotated_keys_keep_old_tokens_verifiable_and_sign_new_ones,
    malformed_requests_get_rfc6749_errors_and_write_nothing,
    a_client_without_the_grant_is_unauthorized,
    a_stock_oauth2_client_works_from_discovery_alone,
);

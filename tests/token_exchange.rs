//! OAuth 2.0 Token Exchange (RFC 8693) over HTTP, on SQLite and PostgreSQL: the access-token exchange
//! narrows and re-targets within the same delegation; `may_act` needs its actor; `act` nests and shows
//! in the token, introspection and the audit trail; impersonation only where configured.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::flows::{claims, code_flow, introspect, register_app};
use common::users::{add_user, csrf_token, login, no_redirect_client};
use common::{TestDb, TestServer};
use projections::Event;
use serde_json::{Value, json};

const CONFIG: &str = r#"
admin_token = "admin-token-admin-token-admin-token-0123"
default_audience = "https://api.example"
[[scopes]]
name = "openid"
description = "Sign you in"
[[scopes]]
name = "read"
description = "Read messages"
default = true
[[scopes]]
name = "write"
description = "Send messages"
[[scopes]]
name = "admin"
description = "Administer"
"#;

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
const REFRESH: &str = "urn:ietf:params:oauth:token-type:refresh_token";
const ID: &str = "urn:ietf:params:oauth:token-type:id_token";
const API: &str = "https://api.example";
const PAYMENTS: &str = "https://payments.example";
const PASSWORD: &str = "correct horse battery";

/// The clients every test uses, with their secrets.
struct Clients {
    /// A web app people sign in to; it may exchange its own tokens, impersonating (not refreshing).
    web: String,
    /// A web app whose access tokens name `svc` as the one party that may act for their subject.
    guarded: String,
    /// A service that exchanges tokens only with an actor (itself, by its client-credentials token).
    svc: String,
    /// A service that may also impersonate.
    imp: String,
}

async fn setup(db: &TestDb) -> (TestServer, Clients) {
    let s = TestServer::start(db, CONFIG).await;
    let web = register_app(
        &s,
        "web",
        &["openid", "read", "write"],
        json!({
            "grant_types": ["authorization_code", "refresh_token", TE],
            "resources": [API],
            "token_exchange": {"impersonation": true},
        }),
    )
    .await;
    let guarded = register_app(
        &s,
        "guarded",
        &["read", "write"],
        json!({"resources": [API], "may_act": "svc"}),
    )
    .await;
    let service = |id: &str, exchange: Value| {
        json!({
            "client_id": id,
            "name": id,
            "audience": "machine",
            "grant_types": ["client_credentials", TE],
            "scopes": ["read", "write", "admin"],
            "resources": [API, PAYMENTS],
            "token_endpoint_auth_method": "client_secret_basic",
            "token_exchange": exchange,
        })
    };
    let svc = s
        .register(service("svc", json!({"actors": ["svc"]})))
        .await
        .unwrap();
    let imp = s
        .register(service("imp", json!({"impersonation": true, "actors": true})))
        .await
        .unwrap();
    add_user(&s, "ann", PASSWORD, json!({})).await;
    (
        s,
        Clients {
            web,
            guarded,
            svc,
            imp,
        },
    )
}

/// Ann's tokens for `client` after the code flow with `scope`.
async fn user_tokens(s: &TestServer, client: (&str, &str), scope: &str) -> Value {
    let cookie = login(s, "ann", PASSWORD).await;
    let approve: Vec<&str> = scope.split(' ').collect();
    code_flow(s, &cookie, client, scope, &approve).await
}

/// A client-credentials access token of `client`: its subject is the client itself.
async fn own_token(s: &TestServer, client: (&str, &str)) -> String {
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(client),
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// POST /token with the token exchange grant and `params`.
async fn exchange(s: &TestServer, client: (&str, &str), params: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![("grant_type", TE)];
    form.extend_from_slice(params);
    let (status, _, body) = s.post_form("/token", Some(client), &form).await;
    (status, body)
}

fn access_token(body: &Value) -> &str {
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {body}"))
}

fn error(status: u16, body: &Value) -> String {
    assert_eq!(status, 400, "{body}");
    body["error"].as_str().unwrap_or_default().to_owned()
}

/// The `TokenIssued` of `jwt`.
async fn issued(s: &TestServer, jwt: &str) -> projections::event::TokenIssued {
    let jti = claims(jwt)["jti"].as_str().unwrap().to_owned();
    let events = s.app.store.read_from(1, 10_000).await.unwrap();
    events
        .into_iter()
        .find_map(|e| match e.decode().unwrap().event {
            Event::TokenIssued(t) if t.jti == jti => Some(t),
            _ => None,
        })
        .unwrap()
}

on_both_stores!(
    an_access_token_is_exchanged_for_a_narrower_one_in_the_same_delegation,
    an_access_token_is_exchanged_for_another_registered_audience,
    widening_the_scope_is_refused,
    an_unregistered_audience_is_invalid_target,
    may_act_is_enforced_without_actor_token,
    may_act_refuses_another_actor,
    act_nests_and_shows_in_the_token_introspection_and_audit,
    impersonation_is_refused_unless_configured,
    exchanged_token_ends_with_its_delegation,
    exchanged_token_ends_when_the_user_revokes_on_the_account_page,
    an_id_token_is_exchanged_for_an_access_token,
    an_id_token_is_not_accepted_as_an_access_token,
    a_refresh_token_is_refused_when_the_client_may_not_have_one,
    a_refresh_token_continues_the_clients_own_delegation_when_allowed,
    this_servers_token_presented_as_a_foreign_jwt_is_refused,
);

async fn an_access_token_is_exchanged_for_a_narrower_one_in_the_same_delegation(db: TestDb) {
    let (s, c) = setup(&db).await;
    let tokens = user_tokens(&s, ("web", &c.web), "read write").await;
    let subject = access_token(&tokens);
    let (status, body) = exchange(
        &s,
        ("imp", &c.imp),
        &[
            ("subject_token", subject),
            ("subject_token_type", ACCESS),
            ("scope", "read"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "read");
    assert!(body["expires_in"].as_i64().unwrap() > 0, "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let new = access_token(&body);
    let jwt = claims(new);
    assert_eq!(jwt["sub"], claims(subject)["sub"]);
    assert_eq!(jwt["client_id"], "imp");
    assert_eq!(jwt["scope"], "read");
    assert_eq!(jwt["aud"], json!([API]));
    // The same delegation as the subject token, and the exchange's own grant type in the ledger
    let (original, exchanged) = (issued(&s, subject).await, issued(&s, new).await);
    assert!(original.delegation_id.is_some());
    assert_eq!(exchanged.delegation_id, original.delegation_id);
    assert_eq!(exchanged.grant_type, TE);
    assert!(exchanged.expires_at <= original.expires_at);
}

async fn an_access_token_is_exchanged_for_another_registered_audience(db: TestDb) {
    let (s, c) = setup(&db).await;
    let tokens = user_tokens(&s, ("web", &c.web), "read write").await;
    for target in ["resource", "audience"] {
        let (status, body) = exchange(
            &s,
            ("imp", &c.imp),
            &[
                ("subject_token", access_token(&tokens)),
                ("subject_token_type", ACCESS),
                (target, PAYMENTS),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let jwt = claims(access_token(&body));
        assert_eq!(jwt["aud"], json!([PAYMENTS]), "{target}");
        assert_eq!(jwt["scope"], "read write");
    }
}

async fn widening_the_scope_is_refused(db: TestDb) {
    let (s, c) = setup(&db).await;
    let tokens = user_tokens(&s, ("web", &c.web), "read").await;
    let (status, body) = exchange(
        &s,
        ("imp", &c.imp),
        &[
            ("subject_token", access_token(&tokens)),
            ("subject_token_type", ACCESS),
            ("scope", "read admin"),
        ],
    )
    .await;
    assert_eq!(error(status, &body), "invalid_scope", "{body}");
}

async fn an_unregistered_audience_is_invalid_target(db: TestDb) {
    let (s, c) = setup(&db).await;
    let tokens = user_tokens(&s, ("web", &c.web), "read").await;
    let (status, body) = exchange(
        &s,
        ("imp", &c.imp),
        &[
            ("subject_token", access_token(&tokens)),
            ("subject_token_type", ACCESS),
            ("resource", "https://elsewhere.example"),
        ],
    )
    .await;
    assert_eq!(error(status, &body), "invalid_target", "{body}");
}

async fn may_act_is_enforced_without_actor_token(db: TestDb) {
    let (s, c) = setup(&db).await;
    let tokens = user_tokens(&s, ("guarded", &c.guarded), "read").await;
    let subject = access_token(&tokens);
    assert_eq!(claims(subject)["may_act"], json!({"sub": "svc"}));
    // `imp` may impersonate, but the subject token names who may act: leaving the actor out is refused
    let (status, body) = exchange(
        &s,
        ("imp", &c.imp),
        &[("subject_token", subject), ("subject_token_type", ACCESS)],
    )
    .await;
    assert_eq!(error(status, &body), "invalid_request", "{body}");
    assert!(
        body["error_description"].as_str().unwrap().contains("may_act"),
        "{body}"
    );
    // The named actor, with its own token, is let through
    let actor = own_token(&s, ("svc", &c.svc)).await;
    let (status, body) = exchange(
        &s,
        ("svc", &c.svc),
        &[
            ("subject_token", subject),
            ("subject_token_type", ACCESS),
            ("actor_token", &actor),
            ("actor_token_type", ACCESS),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(claims(access_token(&body))["act"], json!({"sub": "svc"}));
}

async fn may_act_refuses_another_actor(db: TestDb) {
    let (s, c) = setup(&db).await;
    let tokens = user_tokens(&s, ("guarded", &c.guarded), "read").await;
    let actor = own_token(&s, ("imp", &c.imp)).await;
    let (status, body) = exchange(
        &s,
        ("imp", &c.imp),
        &[
            ("subject_token", access_token(&tokens)),
            ("subject_token_type", ACCESS),
            ("actor_token", &actor),
            ("actor_token_type", ACCESS),
        ],
    )
    .await;
    assert_eq!(error(status, &body), "invalid_request", "{body}");
    // Nor may a client pass off another client's token as its actor
    let svc_token = own_token(&s, ("svc", &c.svc)).await;
    let (status, body) = exchange(
        &s,
        ("imp", &c.imp),
        &[
            ("subject_token", access_token(&tokens)),
            ("subject_token_type", ACCESS),
            ("actor_token", &svc_token),
            ("actor_token_type", ACCESS),
        ],
    )
    .await;
    assert_eq!(error(status, &body), "invalid_request", "{body}");
}

async fn act_nests_and_shows_in_the_token_introspection_and_audit(db: TestDb) {
    let (s, c) = setup(&db).await;
    let tokens = user_tokens(&s, ("guarded", &c.guarded), "read write").await;
    let svc_actor = own_token(&s, ("svc", &c.svc)).await;
    let (status, first) = exchange(
        &s,
        ("svc", &c.svc),
        &[
            ("subject_token", access_token(&tokens)),
            ("subject_token_type", ACCESS),
            ("actor_token", &svc_actor),
            ("actor_token_type", ACCESS),
        ],
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let first = access_token(&first).to_owned();
    // `svc` passes its token on to `imp`, which acts in turn: the earlier actor nests
    let imp_actor = own_token(&s, ("imp", &c.imp)).await;
    let (status, second) = exchange(
        &s,
        ("imp", &c.imp),
        &[
            ("subject_token", &first),
            ("subject_token_type", ACCESS),
            ("actor_token", &imp_actor),
            ("actor_token_type", ACCESS),
            ("scope", "read"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let second = access_token(&second).to_owned();
    let nested = json!({"sub": "imp", "act": {"sub": "svc"}});
    assert_eq!(claims(&second)["act"], nested);
    assert_eq!(claims(&second)["sub"], claims(access_token(&tokens))["sub"]);
    // Introspection answers `act` from the ledger
    let seen = introspect(&s, ("imp", &c.imp), &second).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["act"], nested);
    let seen = introspect(&s, ("svc", &c.svc), &first).await;
    assert_eq!(seen["act"], json!({"sub": "svc"}));
    // And the audit explanation shows who acted
    let jti = claims(&second)["jti"].as_str().unwrap().to_owned();
    let explained = consent_ledger::audit::explain::explain(s.app.store.as_ref(), &jti)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(explained["act"], nested);
    let exchanged = &explained["decision_trail"]["exchanged"];
    assert_eq!(exchanged["subject_token"], claims(&first)["jti"]);
    assert_eq!(exchanged["actor_token"], claims(&imp_actor)["jti"]);
    let text = consent_ledger::audit::explain::render(&explained);
    assert!(
        text.contains("acted for by imp") && text.contains("acted for by svc"),
        "{text}"
    );
    assert!(text.contains("exchanged from"), "{text}");
}

async fn impersonation_is_refused_unless_configured(db: TestDb) {
    let (s, c) = setup(&db).await;
    let tokens = user_tokens(&s, ("web", &c.web), "read").await;
    let form = [
        ("subject_token", access_token(&tokens)),
        ("subject_token_type", ACCESS),
    ];
    let (status, body) = exchange(&s, ("svc", &c.svc), &form).await;
    assert_eq!(error(status, &body), "invalid_request", "{body}");
    let (status, body) = exchange(&s, ("imp", &c.imp), &form).await;
    assert_eq!(status, 200, "{body}");
    let jwt = claims(access_token(&body));
    assert!(jwt.get("act").is_none(), "{jwt}");
    assert_eq!(jwt["sub"], claims(access_token(&tokens))["sub"]);
}

async fn exchanged_token_ends_with_its_delegation(db: TestDb) {
    let (s, c) = setup(&db).await;
    let tokens = user_tokens(&s, ("web", &c.web), "read write").await;
    let (status, body) = exchange(
        &s,
        ("imp", &c.imp),
        &[
            ("subject_token", access_token(&tokens)),
            ("subject_token_type", ACCESS),
            ("scope", "read"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let exchanged = access_token(&body).to_owned();
    assert_eq!(introspect(&s, ("imp", &c.imp), &exchanged).await["active"], true);
    // The web app revokes its refresh token, and with it the delegation (RFC 7009 §2.1)
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, _, _) = s
        .post_form("/revoke", Some(("web", &c.web)), &[("token", refresh)])
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        introspect(&s, ("imp", &c.imp), &exchanged).await,
        json!({"active": false})
    );
    // And the exchanged token cannot be exchanged again
    let (status, body) = exchange(
        &s,
        ("imp", &c.imp),
        &[("subject_token", &exchanged), ("subject_token_type", ACCESS)],
    )
    .await;
    assert_eq!(error(status, &body), "invalid_grant", "{body}");
}

async fn an_id_token_is_exchanged_for_an_access_token(db: TestDb) {
    let (s, c) = setup(&db).await;
    let tokens = user_tokens(&s, ("web", &c.web), "openid read").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let (status, body) = exchange(
        &s,
        ("web", &c.web),
        &[
            ("subject_token", id_token),
            ("subject_token_type", ID),
            ("scope", "read"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let jwt = claims(access_token(&body));
    assert_eq!(jwt["sub"], claims(id_token)["sub"]);
    assert_eq!(jwt["scope"], "read");
    // Its `aud` is `web`: another client may not present it
    let (status, body) = exchange(
        &s,
        ("imp", &c.imp),
        &[("subject_token", id_token), ("subject_token_type", ID)],
    )
    .await;
    assert_eq!(error(status, &body), "invalid_grant", "{body}");
}

async fn an_id_token_is_not_accepted_as_an_access_token(db: TestDb) {
    let (s, c) = setup(&db).await;
    let tokens = user_tokens(&s, ("web", &c.web), "openid read").await;
    for (token, kind) in [
        (tokens["id_token"].as_str().unwrap(), ACCESS),
        (tokens["refresh_token"].as_str().unwrap(), ACCESS),
        (access_token(&tokens), REFRESH),
    ] {
        let (status, body) = exchange(
            &s,
            ("web", &c.web),
            &[("subject_token", token), ("subject_token_type", kind)],
        )
        .await;
        assert_eq!(error(status, &body), "invalid_grant", "{body}");
    }
}

async fn a_refresh_token_is_refused_when_the_client_may_not_have_one(db: TestDb) {
    let (s, c) = setup(&db).await;
    let tokens = user_tokens(&s, ("web", &c.web), "read").await;
    let (status, body) = exchange(
        &s,
        ("web", &c.web),
        &[
            ("subject_token", tokens["refresh_token"].as_str().unwrap()),
            ("subject_token_type", REFRESH),
            ("requested_token_type", REFRESH),
        ],
    )
    .await;
    assert_eq!(error(status, &body), "invalid_request", "{body}");
    // The same exchange for an access token is fine, and does not use up the refresh token
    let (status, body) = exchange(
        &s,
        ("web", &c.web),
        &[
            ("subject_token", tokens["refresh_token"].as_str().unwrap()),
            ("subject_token_type", REFRESH),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(("web", &c.web)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Another client's refresh token is as unknown as a made-up one
    let (status, body) = exchange(
        &s,
        ("imp", &c.imp),
        &[
            ("subject_token", body["refresh_token"].as_str().unwrap()),
            ("subject_token_type", REFRESH),
        ],
    )
    .await;
    assert_eq!(error(status, &body), "invalid_grant", "{body}");
}

async fn this_servers_token_presented_as_a_foreign_jwt_is_refused(db: TestDb) {
    let (s, c) = setup(&db).await;
    let tokens = user_tokens(&s, ("web", &c.web), "read").await;
    let (status, body) = exchange(
        &s,
        ("imp", &c.imp),
        &[
            ("subject_token", access_token(&tokens)),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ],
    )
    .await;
    // Read as a JWT of another issuer, this server is not one it trusts
    assert_eq!(error(status, &body), "invalid_grant", "{body}");
}

async fn a_refresh_token_continues_the_clients_own_delegation_when_allowed(db: TestDb) {
    let (s, _) = setup(&db).await;
    let secret = register_app(
        &s,
        "keeper",
        &["read", "write"],
        json!({
            "grant_types": ["authorization_code", "refresh_token", TE],
            "resources": [API],
            "token_exchange": {"impersonation": true, "refresh_tokens": true},
        }),
    )
    .await;
    let tokens = user_tokens(&s, ("keeper", &secret), "read write").await;
    let (status, body) = exchange(
        &s,
        ("keeper", &secret),
        &[
            ("subject_token", access_token(&tokens)),
            ("subject_token_type", ACCESS),
            ("requested_token_type", REFRESH),
            ("scope", "read"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS);
    let refresh = body["refresh_token"].as_str().unwrap();
    // The narrowed refresh token refreshes within the same delegation, and only to what it carries
    let (status, _, refreshed) = s
        .post_form(
            "/token",
            Some(("keeper", &secret)),
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(refreshed["scope"], "read");
    let (original, renewed) = (
        issued(&s, access_token(&tokens)).await,
        issued(&s, access_token(&refreshed)).await,
    );
    assert_eq!(renewed.delegation_id, original.delegation_id);
}

/// `/openapi.json` documents the exchange's form, its token types and the client settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_token_exchange() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db, CONFIG).await;
    let doc = s.get_json("/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["TokenExchangeGrant"]["enum"], json!([TE]), "{schemas}");
    assert!(
        schemas["GrantTypeSchema"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!(TE))
    );
    let form = &schemas["TokenExchangeForm"];
    for p in [
        "subject_token",
        "subject_token_type",
        "actor_token",
        "actor_token_type",
        "requested_token_type",
        "scope",
        "resource",
        "audience",
    ] {
        assert!(form["properties"].get(p).is_some(), "{p} in {form}");
    }
    assert_eq!(
        form["required"],
        json!(["grant_type", "subject_token", "subject_token_type"])
    );
    assert!(
        schemas["SubjectTokenType"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!(ID))
    );
    assert!(
        schemas["TokenResponseSchema"]["properties"]
            .get("issued_token_type")
            .is_some()
    );
    let introspection = &schemas["IntrospectionSchema"];
    assert!(introspection["properties"].get("act").is_some());
    assert_eq!(introspection["required"], json!(["active"]), "{introspection}");
    let client = &schemas["ClientRegistration"]["properties"];
    assert!(
        client.get("token_exchange").is_some() && client.get("may_act").is_some(),
        "{client}"
    );
}

async fn exchanged_token_ends_when_the_user_revokes_on_the_account_page(db: TestDb) {
    let (s, c) = setup(&db).await;
    let cookie = login(&s, "ann", PASSWORD).await;
    let tokens = code_flow(&s, &cookie, ("web", &c.web), "read", &["read"]).await;
    let (status, body) = exchange(
        &s,
        ("imp", &c.imp),
        &[
            ("subject_token", access_token(&tokens)),
            ("subject_token_type", ACCESS),
            ("resource", PAYMENTS),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let exchanged = access_token(&body).to_owned();
    let delegation = issued(&s, &exchanged).await.delegation_id.unwrap();
    assert_eq!(introspect(&s, ("imp", &c.imp), &exchanged).await["active"], true);
    let csrf = csrf_token(&s, &cookie).await;
    let r = no_redirect_client()
        .post(format!("{}/account/delegations/{delegation}/revoke", s.base))
        .header(reqwest::header::COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(
        introspect(&s, ("imp", &c.imp), &exchanged).await,
        json!({"active": false})
    );
}

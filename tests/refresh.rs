//! The `refresh_token` grant on SQLite and PostgreSQL: rotation, reuse detection and its grace window,
//! scope narrowing, the policy decided again, concurrent refreshes (in one process and in two sharing
//! PostgreSQL), and refresh tokens at `/introspect` and `/revoke`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{TOKEN_CONFIG, TestDb, TestServer};
use consent_ledger::audit::verify::Verdict;
use consent_ledger::grants::refresh::{self, Minting};
use consent_ledger::store::{AppendRequest, ExpectedVersion};
use projections::Event;
use projections::event::{AuthContext, DelegationCreated, GrantedScope, V1};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-admin-token-admin-token-0123";

/// Registers a client that may refresh, with the given reuse grace window; returns its secret.
async fn client(s: &TestServer, id: &str, grace: u32) -> String {
    s.register(json!({
        "client_id": id, "name": id,
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": ["read", "write", "admin"],
        "refresh_reuse_grace_seconds": grace,
    }))
    .await
    .unwrap()
}

/// A delegation a user gave `client_id`, with its first refresh token, recorded as the code flow would.
struct Seeded {
    delegation_id: String,
    subject: String,
    refresh: String,
}

/// Appends `DelegationCreated` for `scopes` (each with its own expiry) and the first refresh token.
async fn seed(s: &TestServer, client_id: &str, scopes: &[(&str, Option<i64>)]) -> Seeded {
    seed_created(s, client_id, scopes, s.app.now()).await
}

/// As [`seed`], for a delegation created at `now` (its first refresh token issued then too).
async fn seed_created(s: &TestServer, client_id: &str, scopes: &[(&str, Option<i64>)], now: i64) -> Seeded {
    let id = consent_ledger::ids::id();
    let subject = format!("user-{id}");
    let created = Event::DelegationCreated(DelegationCreated {
        v: V1,
        delegation_id: id.clone(),
        subject: subject.clone(),
        client_id: client_id.into(),
        scopes: scopes
            .iter()
            .map(|(scope, expires_at)| GrantedScope {
                scope: (*scope).into(),
                expires_at: *expires_at,
            })
            .collect(),
        authorization_details: Value::Null,
        claims: Value::Null,
        auth: AuthContext {
            acr: None,
            amr: vec!["pwd".into()],
            auth_time: Some(now),
        },
        grant_type: "authorization_code".into(),
        at: now,
        audience: vec![],
    });
    let (value, minted) = refresh::mint(Minting {
        delegation_id: &id,
        client_id,
        subject: &subject,
        scopes: scopes.iter().map(|(s, _)| (*s).to_owned()).collect(),
        now,
        lifetime_seconds: 3600,
        parent_hash: None,
    })
    .unwrap();
    s.app
        .store
        .append(
            AppendRequest::to_stream(
                consent_ledger::delegations::stream(&id),
                ExpectedVersion::NoStream,
                vec![created],
            )
            .and(minted),
        )
        .await
        .unwrap();
    Seeded {
        delegation_id: id,
        subject,
        refresh: value,
    }
}

/// `POST /token` with `grant_type=refresh_token`; returns status and body.
async fn refresh_with(s: &TestServer, who: (&str, &str), token: &str, scope: Option<&str>) -> (u16, Value) {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let (status, _, body) = s.post_form("/token", Some(who), &form).await;
    (status, body)
}

/// A successful refresh: the new access and refresh tokens.
async fn refreshed(s: &TestServer, who: (&str, &str), token: &str) -> (String, String, Value) {
    let (status, body) = refresh_with(s, who, token, None).await;
    assert_eq!(status, 200, "{body}");
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
        body,
    )
}

async fn introspect(s: &TestServer, who: (&str, &str), token: &str) -> Value {
    let (status, _, body) = s.post_form("/introspect", Some(who), &[("token", token)]).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn active(s: &TestServer, who: (&str, &str), token: &str) -> bool {
    introspect(s, who, token).await["active"].as_bool().unwrap()
}

fn claims(jwt: &str) -> Value {
    jsonwebtoken::dangerous::insecure_decode::<Value>(jwt)
        .unwrap()
        .claims
}

/// Payloads of the ledger's events of `event_type`.
async fn events(s: &TestServer, event_type: &str) -> Vec<Value> {
    s.app
        .store
        .read_from(1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == event_type)
        .map(|e| serde_json::from_str(&e.payload).unwrap())
        .collect()
}

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

async fn rotation_replaces_the_token_and_the_new_one_works(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = client(&s, "app", 0).await;
    let app = ("app", secret.as_str());
    let d = seed(&s, "app", &[("read", None), ("write", None)]).await;

    let (at, rt, body) = refreshed(&s, app, &d.refresh).await;
    assert_ne!(rt, d.refresh);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "read write");
    assert_eq!(body["expires_in"], 300);
    let c = claims(&at);
    assert_eq!(
        (c["scope"].as_str(), c["sub"].as_str()),
        (Some("read write"), Some(d.subject.as_str()))
    );
    assert_eq!(c["client_id"], "app");

    // The old token is spent, the new one is live and says what it carries.
    assert_eq!(introspect(&s, app, &d.refresh).await, json!({"active": false}));
    let r = introspect(&s, app, &rt).await;
    assert_eq!(r["active"], true);
    assert_eq!(r["token_type"], "refresh_token");
    assert_eq!(r["scope"], "read write");
    assert_eq!(r["client_id"], "app");
    assert_eq!(r["sub"], d.subject.as_str());
    assert!(r["exp"].as_i64().unwrap() > r["iat"].as_i64().unwrap());
    assert!(active(&s, app, &at).await);

    // The ledger: the old token rotated to the new one, whose parent it is; the access token in the
    // delegation.
    let old_hash = refresh::hash(&d.refresh);
    let new_hash = refresh::hash(&rt);
    let rotated = events(&s, "RefreshTokenRotated").await;
    assert_eq!(rotated.len(), 1);
    assert_eq!(
        (&rotated[0]["token_hash"], &rotated[0]["successor_hash"]),
        (&json!(old_hash), &json!(new_hash))
    );
    let issued = events(&s, "RefreshTokenIssued").await;
    assert_eq!(issued.last().unwrap()["parent_hash"], old_hash.as_str());
    let tokens = events(&s, "TokenIssued").await;
    assert_eq!(tokens.last().unwrap()["delegation_id"], d.delegation_id.as_str());
    assert_eq!(tokens.last().unwrap()["grant_type"], "refresh_token");

    // The successor refreshes in turn.
    let (_, rt2, _) = refreshed(&s, app, &rt).await;
    assert!(active(&s, app, &rt2).await);
    assert!(!active(&s, app, &rt).await);

    // Missing and unknown tokens.
    let (status, _, body) = s
        .post_form("/token", Some(app), &[("grant_type", "refresh_token")])
        .await;
    assert_eq!((status, error(&body)), (400, "invalid_request"));
    let (status, body) = refresh_with(&s, app, "no-such-token", None).await;
    assert_eq!((status, error(&body)), (400, "invalid_grant"));
    assert_eq!(
        introspect(&s, app, "no-such-token").await,
        json!({"active": false})
    );
}

async fn reuse_without_grace_revokes_the_delegation(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = client(&s, "app", 0).await;
    let app = ("app", secret.as_str());
    let d = seed(&s, "app", &[("read", None)]).await;
    let (at1, rt1, _) = refreshed(&s, app, &d.refresh).await;
    let (at2, rt2, _) = refreshed(&s, app, &rt1).await;
    assert!(active(&s, app, &at1).await && active(&s, app, &at2).await);

    // The first token again: reuse.
    let (status, body) = refresh_with(&s, app, &d.refresh, None).await;
    assert_eq!((status, error(&body)), (400, "invalid_grant"));
    // Everything of the delegation ends: the live successor and every access token.
    for t in [&rt1, &rt2, &at1, &at2] {
        assert_eq!(introspect(&s, app, t).await, json!({"active": false}));
    }
    let (status, body) = refresh_with(&s, app, &rt2, None).await;
    assert_eq!((status, error(&body)), (400, "invalid_grant"));

    let revoked = events(&s, "DelegationRevoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["delegation_id"], d.delegation_id.as_str());
    assert_eq!(revoked[0]["reason"], "refresh_token_reuse");
    let reuse = events(&s, "RefreshTokenReuseDetected").await;
    assert_eq!(reuse.len(), 1);
    assert_eq!(reuse[0]["token_hash"], refresh::hash(&d.refresh).as_str());
    assert_eq!(reuse[0]["action"], "delegation_revoked");
    assert_eq!(reuse[0]["client_id"], "app");

    // Presenting it once more records nothing more: the delegation has already ended.
    let head = s.app.store.head().await.unwrap().position;
    let (status, body) = refresh_with(&s, app, &d.refresh, None).await;
    assert_eq!((status, error(&body)), (400, "invalid_grant"));
    assert_eq!(s.app.store.head().await.unwrap().position, head);

    // The ledger still verifies and replays to the stored projections.
    let verdict = consent_ledger::audit::verify::verify(s.app.store.as_ref(), None)
        .await
        .unwrap();
    assert!(matches!(verdict, Verdict::Intact { .. }), "{verdict:?}");
    let differences = consent_ledger::audit::replay::compare(s.app.store.as_ref())
        .await
        .unwrap();
    assert!(differences.is_empty(), "{differences:?}");
}

async fn the_grace_window_reissues_then_reuse_past_it_revokes(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = client(&s, "lenient", 30).await;
    let app = ("lenient", secret.as_str());
    let d = seed(&s, "lenient", &[("read", None), ("write", None)]).await;
    let (at1, rt1, _) = refreshed(&s, app, &d.refresh).await;

    // The response was lost; the client retries with the token it still has, within the window.
    let (at2, rt2, body) = refreshed(&s, app, &d.refresh).await;
    assert_eq!(body["scope"], "read write");
    assert_ne!(rt2, rt1);
    assert!(active(&s, app, &at2).await && active(&s, app, &rt2).await);
    assert!(active(&s, app, &at1).await, "the delegation is still active");
    let (_, rt3, _) = refreshed(&s, app, &rt2).await;
    assert!(active(&s, app, &rt3).await);
    let reuse = events(&s, "RefreshTokenReuseDetected").await;
    assert_eq!(reuse.len(), 1);
    assert_eq!(reuse[0]["action"], "grace_reissued");
    assert!(events(&s, "DelegationRevoked").await.is_empty());
    let issued = events(&s, "RefreshTokenIssued").await;
    assert!(
        issued
            .iter()
            .any(|e| e["token_hash"] == refresh::hash(&rt2).as_str()
                && e["parent_hash"] == refresh::hash(&d.refresh).as_str())
    );

    // A token rotated two minutes ago is past the window: the delegation ends. The client lost the
    // answer to its rotation and comes back with the old token after two minutes.
    let old = seed(&s, "lenient", &[("read", None)]).await;
    refreshed(&s, app, &old.refresh).await;
    s.advance(120);
    let (status, body) = refresh_with(&s, app, &old.refresh, None).await;
    assert_eq!((status, error(&body)), (400, "invalid_grant"));
    let revoked = events(&s, "DelegationRevoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["delegation_id"], old.delegation_id.as_str());
    let reuse = events(&s, "RefreshTokenReuseDetected").await;
    assert_eq!(reuse.last().unwrap()["action"], "delegation_revoked");
    // The first delegation is untouched.
    assert!(active(&s, app, &rt3).await);
}

async fn scope_may_narrow_but_not_widen(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = client(&s, "app", 0).await;
    let app = ("app", secret.as_str());
    let d = seed(&s, "app", &[("read", None), ("write", None)]).await;

    // Widening fails and spends nothing.
    let (status, body) = refresh_with(&s, app, &d.refresh, Some("read admin")).await;
    assert_eq!((status, error(&body)), (400, "invalid_scope"));
    assert!(active(&s, app, &d.refresh).await);

    let (status, body) = refresh_with(&s, app, &d.refresh, Some("read")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "read");
    assert_eq!(claims(body["access_token"].as_str().unwrap())["scope"], "read");
    // The new refresh token keeps the original scope (RFC 6749 §6).
    let rt = body["refresh_token"].as_str().unwrap();
    assert_eq!(introspect(&s, app, rt).await["scope"], "read write");
    let (_, _, body) = refreshed(&s, app, rt).await;
    assert_eq!(body["scope"], "read write");
}

async fn a_scope_whose_delegated_expiry_passed_is_dropped(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = client(&s, "app", 0).await;
    let app = ("app", secret.as_str());
    let now = s.app.now();
    let d = seed(&s, "app", &[("read", None), ("write", Some(now - 10))]).await;
    let (at, rt, body) = refreshed(&s, app, &d.refresh).await;
    assert_eq!(body["scope"], "read");
    assert_eq!(claims(&at)["scope"], "read");
    // Asking for only the expired one is refused without spending the token.
    let (status, body) = refresh_with(&s, app, &rt, Some("write")).await;
    assert_eq!((status, error(&body)), (400, "invalid_scope"));
    assert!(active(&s, app, &rt).await);

    // A scope the delegation holds for 100 more seconds bounds the access token's lifetime.
    let d = seed(&s, "app", &[("read", None), ("write", Some(now + 100))]).await;
    let (at, _, body) = refreshed(&s, app, &d.refresh).await;
    assert_eq!(body["scope"], "read write");
    assert!(claims(&at)["exp"].as_i64().unwrap() <= now + 100);
    assert!(body["expires_in"].as_i64().unwrap() <= 100);
}

const RELOADABLE: &str = r#"
admin_token = "admin-token-admin-token-admin-token-0123"
default_audience = "https://api.example"
[[authorizers]]
name = "open"
type = "allow"
[[authorizers]]
name = "retired"
type = "deny"
reason = "this scope is retired"
[[scopes]]
name = "read"
default = true
authorizers = ["open"]
[[scopes]]
name = "write"
authorizers = ["open"]
[[scopes]]
name = "admin"
authorizers = ["open"]
"#;

async fn the_policy_in_force_decides_each_refresh(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("consent-ledger.toml");
    std::fs::write(&file, RELOADABLE).unwrap();
    let s = TestServer::start_from_file(&db, &file).await;
    let secret = client(&s, "app", 0).await;
    let app = ("app", secret.as_str());
    let d = seed(&s, "app", &[("read", None), ("write", None)]).await;
    let (_, rt, body) = refreshed(&s, app, &d.refresh).await;
    assert_eq!(body["scope"], "read write");

    std::fs::write(
        &file,
        RELOADABLE.replace(
            "name = \"write\"\nauthorizers = [\"open\"]",
            "name = \"write\"\nauthorizers = [\"retired\"]",
        ),
    )
    .unwrap();
    let r = s
        .http
        .post(format!("{}/admin/policy/reload", s.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (at, rt2, body) = refreshed(&s, app, &rt).await;
    assert_eq!(body["scope"], "read");
    assert_eq!(claims(&at)["scope"], "read");
    // The refresh token still carries what the delegation granted; the policy decides each time.
    assert_eq!(introspect(&s, app, &rt2).await["scope"], "read write");
    let jti = claims(&at)["jti"].as_str().unwrap().to_owned();
    let explained = consent_ledger::audit::explain::explain(s.app.store.as_ref(), &jti)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(explained["policy_version"], s.app.policy().version.as_str());
    let trail = explained["decision_trail"]["scopes"].as_array().unwrap();
    let write = trail.iter().find(|t| t["scope"] == "write").unwrap();
    assert_eq!(write["reason"], "this scope is retired");
}

/// Refreshes `token` `n` times at once, spread over the servers at `bases`; returns statuses and bodies.
async fn race(bases: &[&str], who: (&str, &str), token: &str, n: usize) -> Vec<(u16, Value)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (http, url) = (http.clone(), format!("{}/token", bases[i % bases.len()]));
        let (id, secret, token, barrier) = (
            who.0.to_owned(),
            who.1.to_owned(),
            token.to_owned(),
            barrier.clone(),
        );
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let r = http
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", token.as_str())])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Exactly one answer is 200, the rest `invalid_grant`; the token was rotated exactly once, to exactly
/// one successor.
async fn assert_one_rotation(s: &TestServer, token: &str, answers: &[(u16, Value)]) {
    let ok = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(ok, 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!((*status, error(body)), (400, "invalid_grant"), "{body}");
    }
    let hash = refresh::hash(token);
    let rotations = events(s, "RefreshTokenRotated")
        .await
        .into_iter()
        .filter(|e| e["token_hash"] == hash.as_str())
        .count();
    assert_eq!(rotations, 1);
    let successors = events(s, "RefreshTokenIssued")
        .await
        .into_iter()
        .filter(|e| e["parent_hash"] == hash.as_str())
        .count();
    assert_eq!(successors, 1);
}

async fn of_concurrent_refreshes_exactly_one_rotates(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = client(&s, "app", 0).await;
    let app = ("app", secret.as_str());
    let d = seed(&s, "app", &[("read", None)]).await;
    let answers = race(&[&s.base], app, &d.refresh, 20).await;
    assert_one_rotation(&s, &d.refresh, &answers).await;
    // The losers presented a rotated token: reuse, so the delegation ended (no grace window).
    let revoked = events(&s, "DelegationRevoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["reason"], "refresh_token_reuse");
    let (_, winner) = answers.iter().find(|(status, _)| *status == 200).unwrap();
    assert!(!active(&s, app, winner["refresh_token"].as_str().unwrap()).await);
}

/// A second server process over the same database: its own pool and group-commit writer, the same
/// issuer and signing keys (as processes behind one load balancer sharing a key directory have).
/// Returns its base URL.
async fn second_process(db: &TestDb, first: &TestServer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = consent_ledger::config::Config::parse("test.toml", TOKEN_CONFIG).unwrap();
    config.issuer = first.app.config.issuer.clone();
    config.key_dir = first.app.config.key_dir.clone();
    config.validate("test.toml").unwrap();
    // Another process, but the same instant: it reads the first server's clock.
    let store = db.open_with_clock(&first.clock).await;
    let app = Arc::new(consent_ledger::app::App::new(store, config).unwrap());
    let now = app.now();
    app.publish_policy(&app.policy(), now).await.unwrap();
    app.keys.current(app.store.as_ref(), now).await.unwrap();
    let router = consent_ledger::http::router(app);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// Two processes sharing PostgreSQL race to refresh the same tokens: each token rotates exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_postgres_rotate_a_token_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let s1 = TestServer::start(&db, TOKEN_CONFIG).await;
    let s2 = second_process(&db, &s1).await;
    let secret = client(&s1, "app", 0).await;
    let app = ("app", secret.as_str());
    for _ in 0..5 {
        let d = seed(&s1, "app", &[("read", None)]).await;
        let answers = race(&[&s1.base, &s2], app, &d.refresh, 20).await;
        assert_one_rotation(&s1, &d.refresh, &answers).await;
        // Never two live successors (and the losers' reuse then ended the delegation as a whole).
        let live = {
            let rows: Vec<projections::refresh_tokens::RefreshToken> = consent_ledger::store::find(
                s1.app.store.as_ref(),
                consent_ledger::store::RowFilter {
                    delegation_id: Some(&d.delegation_id),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            let mut live = 0;
            for r in rows {
                if r.status == projections::refresh_tokens::RefreshStatus::Active {
                    live += 1;
                }
            }
            live
        };
        assert_eq!(
            live, 1,
            "exactly one successor, the winner's, and the presented token spent"
        );
    }
    let verdict = consent_ledger::audit::verify::verify(s1.app.store.as_ref(), None)
        .await
        .unwrap();
    assert!(matches!(verdict, Verdict::Intact { .. }), "{verdict:?}");
    let differences = consent_ledger::audit::replay::compare(s1.app.store.as_ref())
        .await
        .unwrap();
    assert!(differences.is_empty(), "{differences:?}");
}

async fn revoking_a_refresh_token_ends_its_grant(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = client(&s, "app", 0).await;
    let other = client(&s, "other", 0).await;
    let app = ("app", secret.as_str());
    let d = seed(&s, "app", &[("read", None)]).await;
    let (at, rt, _) = refreshed(&s, app, &d.refresh).await;

    // Another client's revocation answers 200 and changes nothing.
    let head = s.app.store.head().await.unwrap().position;
    let (status, _, _) = s
        .post_form(
            "/revoke",
            Some(("other", &other)),
            &[("token", &rt), ("token_type_hint", "refresh_token")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.app.store.head().await.unwrap().position, head);
    assert!(active(&s, app, &rt).await && active(&s, app, &at).await);

    let (status, _, _) = s.post_form("/revoke", Some(app), &[("token", &rt)]).await;
    assert_eq!(status, 200);
    assert_eq!(introspect(&s, app, &rt).await, json!({"active": false}));
    assert_eq!(introspect(&s, app, &at).await, json!({"active": false}));
    let (status, body) = refresh_with(&s, app, &rt, None).await;
    assert_eq!((status, error(&body)), (400, "invalid_grant"));
    let revoked = events(&s, "RefreshTokenRevoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["reason"], "revoked_by_client");
    let ended = events(&s, "DelegationRevoked").await;
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["reason"], "refresh_token_revoked");
    // Again: 200, nothing more recorded.
    let head = s.app.store.head().await.unwrap().position;
    let (status, _, _) = s
        .post_form(
            "/revoke",
            Some(app),
            &[("token", &rt), ("token_type_hint", "refresh_token")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.app.store.head().await.unwrap().position, head);
}

async fn another_clients_refresh_token_is_invalid_grant(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = client(&s, "app", 0).await;
    let other = client(&s, "other", 0).await;
    let d = seed(&s, "app", &[("read", None)]).await;
    let (status, body) = refresh_with(&s, ("other", &other), &d.refresh, None).await;
    assert_eq!((status, error(&body)), (400, "invalid_grant"));
    // Nothing was spent: the owner still refreshes.
    assert!(active(&s, ("app", &secret), &d.refresh).await);
    refreshed(&s, ("app", &secret), &d.refresh).await;
    // A client not registered for the grant type is refused before the token is looked at.
    let m = s
        .register(
            json!({"client_id": "m", "name": "M", "grant_types": ["client_credentials"], "scopes": ["read"]}),
        )
        .await
        .unwrap();
    let (status, body) = refresh_with(&s, ("m", &m), &d.refresh, None).await;
    assert_eq!((status, error(&body)), (400, "unauthorized_client"));
}

on_both_stores!(
    a_delegation_cannot_be_refreshed_past_its_absolute_lifetime,
    rotation_replaces_the_token_and_the_new_one_works,
    reuse_without_grace_revokes_the_delegation,
    the_grace_window_reissues_then_reuse_past_it_revokes,
    scope_may_narrow_but_not_widen,
    a_scope_whose_delegated_expiry_passed_is_dropped,
    the_policy_in_force_decides_each_refresh,
    of_concurrent_refreshes_exactly_one_rotates,
    revoking_a_refresh_token_ends_its_grant,
    another_clients_refresh_token_is_invalid_grant,
);

/// RFC 9700 §4.14.2: rotation must not extend a grant forever. A delegation older than its client's
/// absolute lifetime no longer refreshes, however recently its token rotated; a younger one's new refresh
/// token never outlives it.
async fn a_delegation_cannot_be_refreshed_past_its_absolute_lifetime(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = s
        .register(json!({
            "client_id": "short", "name": "short",
            "grant_types": ["authorization_code", "refresh_token"],
            "scopes": ["read", "write", "admin"],
            "delegation_lifetime_seconds": 3600,
        }))
        .await
        .unwrap();
    let now = s.app.now();
    let old = seed_created(&s, "short", &[("read", None)], now - 3_600).await;
    let (status, body) = refresh_with(&s, ("short", &secret), &old.refresh, None).await;
    assert_eq!((status, error(&body)), (400, "invalid_grant"), "{body}");

    let young = seed_created(&s, "short", &[("read", None)], now - 100).await;
    let (_, next, _) = refreshed(&s, ("short", &secret), &young.refresh).await;
    let hash = consent_ledger::grants::refresh::hash(&next);
    let issued = events(&s, "RefreshTokenIssued").await;
    let successor = issued.iter().find(|e| e["token_hash"] == hash.as_str()).unwrap();
    assert!(
        successor["expires_at"].as_i64().unwrap() <= now - 100 + 3_600,
        "{successor}"
    );
}

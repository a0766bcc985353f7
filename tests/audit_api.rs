//! The audit API over HTTP, on SQLite and PostgreSQL: who may read it, and what it answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TOKEN_CONFIG, TestDb, TestServer};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-admin-token-admin-token-0123";

/// Registers an auditor and a plain machine client; returns their secrets.
async fn auditor_and_service(s: &TestServer) -> (String, String) {
    let auditor = s
        .register(
            json!({"client_id": "auditor", "name": "Auditor", "audience": "machine",
            "grant_types": ["client_credentials"], "scopes": ["read"], "auditor": true}),
        )
        .await
        .unwrap();
    let service = s
        .register(json!({"client_id": "svc", "name": "Svc", "audience": "machine",
            "grant_types": ["client_credentials"], "scopes": ["read"]}))
        .await
        .unwrap();
    (auditor, service)
}

/// A client-credentials token response for `scope`.
async fn token(s: &TestServer, client: (&str, &str), scope: &str) -> (u16, Value) {
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(client),
            &[("grant_type", "client_credentials"), ("scope", scope)],
        )
        .await;
    (status, body)
}

/// GETs `path` with `Authorization: Bearer token` (if any): status, headers, body text.
async fn get(s: &TestServer, path: &str, bearer: Option<&str>) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = s.http.get(format!("{}{path}", s.base));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

fn lines(body: &str) -> Vec<Value> {
    body.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn only_auditors_and_the_admin_read_the_audit_api(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let (auditor_secret, service_secret) = auditor_and_service(&s).await;

    // The audit scope is issued to the auditor alone, and the trail says why the other was refused.
    let (status, body) = token(&s, ("auditor", &auditor_secret), "audit read").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "audit read");
    let audit_token = body["access_token"].as_str().unwrap().to_owned();
    let (status, body) = token(&s, ("svc", &service_secret), "audit").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    let (status, body) = token(&s, ("svc", &service_secret), "read audit").await;
    assert_eq!(status, 200);
    assert_eq!(body["scope"], "read");
    let plain_token = body["access_token"].as_str().unwrap().to_owned();
    let jti = common::flows::claims(&plain_token)["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let explained = consent_ledger::audit::explain::explain(s.app.store.as_ref(), &jti)
        .await
        .unwrap()
        .unwrap();
    let audit_line = explained["decision_trail"]["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["scope"] == "audit")
        .cloned()
        .unwrap();
    assert_eq!(audit_line["outcome"], "denied");
    assert!(
        audit_line["reason"].as_str().unwrap().contains("auditor"),
        "{audit_line}"
    );

    // Nothing presented: 401 with challenges and no data
    let (status, headers, body) = get(&s, "/audit/events", None).await;
    assert_eq!(status, 401);
    assert!(headers.get_all("www-authenticate").iter().any(|v| v == "Bearer"));
    assert!(!body.contains("position"), "{body}");
    // A token that is not one of ours: 401 invalid_token
    let (status, headers, _) = get(&s, "/audit/events", Some("not-a-token")).await;
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token"),
        "{headers:?}"
    );
    // An active token without audit: 403 insufficient_scope, no data
    let (status, headers, body) = get(&s, "/audit/events", Some(&plain_token)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"insufficient_scope\""),
        "{headers:?}"
    );
    assert!(!body.contains("position"), "{body}");
    // The auditor and the admin read
    let (status, headers, body) = get(&s, "/audit/events", Some(&audit_token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/x-ndjson");
    assert!(!lines(&body).is_empty());
    let (status, _, _) = get(&s, "/audit/events", Some(ADMIN)).await;
    assert_eq!(status, 200);

    // An operator who unmarks the auditor closes the API to its tokens at once
    let r = s
        .http
        .put(format!("{}/admin/clients/auditor", s.base))
        .bearer_auth(ADMIN)
        .json(
            &json!({"client_id": "auditor", "name": "Auditor", "audience": "machine",
            "grant_types": ["client_credentials"], "scopes": ["read"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (status, _, _) = get(&s, "/audit/events", Some(&audit_token)).await;
    assert_eq!(status, 403);
}

async fn the_auditor_setting_is_validated(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    for body in [
        // audit listed by a client that is not an auditor
        json!({"client_id": "a", "name": "A", "grant_types": ["client_credentials"], "scopes": ["audit"]}),
        // an auditor without client_credentials
        json!({"client_id": "b", "name": "B", "grant_types": ["authorization_code"],
            "redirect_uris": ["https://b.example/cb"], "auditor": true}),
        // a dynamically registered auditor
        json!({"client_id": "c", "name": "C", "grant_types": ["client_credentials"],
            "dynamically_registered": true, "auditor": true}),
    ] {
        let r = s
            .http
            .post(format!("{}/admin/clients", s.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
    // In the configuration file, the key at fault is named
    let toml = format!(
        "{TOKEN_CONFIG}\n[[clients]]\nclient_id = \"x\"\nname = \"X\"\ngrant_types = [\"authorization_code\"]\n\
         redirect_uris = [\"https://x.example/cb\"]\nsecret_sha256 = \"{}\"\nauditor = true\n",
        "0".repeat(64)
    );
    let mut config = consent_ledger::config::Config::parse("test.toml", &toml).unwrap();
    config.issuer = "https://issuer.example".into();
    let err = config.validate("test.toml").unwrap_err().to_string();
    assert!(err.contains("clients[0].auditor"), "{err}");
}

async fn event_pages_filter_and_link_to_the_next(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let (auditor_secret, service_secret) = auditor_and_service(&s).await;
    for _ in 0..5 {
        assert_eq!(token(&s, ("svc", &service_secret), "read").await.0, 200);
    }
    let (_, body) = token(&s, ("auditor", &auditor_secret), "audit").await;
    let t = body["access_token"].as_str().unwrap().to_owned();
    let head = s.app.store.head().await.unwrap().position;

    // Walking the whole log two events at a time gives every position once, in order
    let mut path = "/audit/events?limit=2".to_owned();
    let mut seen = Vec::new();
    loop {
        let (status, headers, body) = get(&s, &path, Some(&t)).await;
        assert_eq!(status, 200, "{body}");
        let page = lines(&body);
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|l| l["position"].as_u64().unwrap()));
        match headers.get("link") {
            Some(link) => {
                let link = link.to_str().unwrap();
                path = link
                    .strip_prefix('<')
                    .and_then(|l| l.split_once('>'))
                    .unwrap()
                    .0
                    .to_owned();
                assert!(link.ends_with("rel=\"next\""), "{link}");
            }
            None => break,
        }
    }
    assert_eq!(seen, (1..=head).collect::<Vec<_>>());

    // Each line carries what an auditor needs to recompute the chain
    let (_, _, body) = get(&s, "/audit/events?limit=1", Some(&t)).await;
    let first = &lines(&body)[0];
    for field in [
        "position", "stream", "version", "type", "payload", "metadata", "time", "hash",
    ] {
        assert!(!first[field].is_null(), "{field} missing: {first}");
    }
    let stored = &s.app.store.read_from(1, 1).await.unwrap()[0];
    assert_eq!(first["hash"], stored.hash.as_str());
    assert_eq!(first["payload"].to_string(), stored.payload);

    // Filters: by type and client, by subject, by stream
    let (_, headers, body) = get(
        &s,
        "/audit/events?type=TokenIssued&client_id=svc&limit=1000",
        Some(&t),
    )
    .await;
    let issued = lines(&body);
    assert_eq!(issued.len(), 5, "{body}");
    assert!(
        issued
            .iter()
            .all(|l| l["type"] == "TokenIssued" && l["payload"]["client_id"] == "svc")
    );
    assert!(headers.get("link").is_none());
    let stream = issued[0]["stream"].as_str().unwrap();
    let (_, _, body) = get(&s, &format!("/audit/events?stream={stream}"), Some(&t)).await;
    assert_eq!(lines(&body).len(), 1);
    let (_, _, body) = get(&s, "/audit/events?subject=auditor", Some(&t)).await;
    let by_auditor = lines(&body);
    assert!(by_auditor.iter().any(|l| l["type"] == "TokenIssued"), "{body}");
    assert!(by_auditor.iter().all(|l| l["payload"]["subject"] == "auditor"));
    // Time bounds: nothing before the ledger began, everything up to now
    let (_, _, body) = get(&s, "/audit/events?to=2000-01-01T00:00:00Z", Some(&t)).await;
    assert!(body.is_empty(), "{body}");
    let (_, _, body) = get(&s, "/audit/events?from=2000-01-01T00:00:00Z&limit=1000", Some(&t)).await;
    assert_eq!(lines(&body).len() as u64, head);

    // What the query gets wrong is named
    for bad in [
        "limit=0",
        "limit=1001",
        "from=yesterday",
        "colour=red",
        "after=-1",
    ] {
        let (status, _, body) = get(&s, &format!("/audit/events?{bad}"), Some(&t)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("invalid_request"), "{body}");
    }
}

/// Opens a live follow, resuming after `last_event_id` when given.
async fn follow(s: &TestServer, last_event_id: Option<u64>) -> reqwest::Response {
    let mut req = s
        .http
        .get(format!("{}/audit/events", s.base))
        .bearer_auth(ADMIN)
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    req.send().await.unwrap()
}

/// Reads SSE events from `r` until `done` says so; returns each event's `id` (checking its data is the
/// line of that position).
async fn read_ids(r: &mut reqwest::Response, buffer: &mut String, done: impl Fn(&[u64]) -> bool) -> Vec<u64> {
    let mut ids = Vec::new();
    while !done(&ids) {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().parse::<u64>().unwrap());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str::<Value>(v.trim()).unwrap());
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                assert_eq!(data["position"], id);
                ids.push(id);
                if done(&ids) {
                    return ids;
                }
            }
        }
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), r.chunk())
            .await
            .expect("the follow went quiet")
            .unwrap()
            .expect("the follow ended");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    ids
}

async fn a_follower_gets_every_event_once_in_order_across_a_reconnect(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let store = s.app.store.clone();
    const APPENDS: u64 = 300;
    // Appends run while the follower reads.
    let appender = tokio::spawn(async move {
        for i in 0..APPENDS {
            let jti = format!("live-{i}");
            store
                .append(consent_ledger::store::AppendRequest::to_stream(
                    format!("token-{jti}"),
                    consent_ledger::store::ExpectedVersion::NoStream,
                    vec![common::issued(&jti)],
                ))
                .await
                .unwrap();
            if i % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let mut first = follow(&s, None).await;
    assert_eq!(first.status(), 200);
    assert!(
        first.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut buffer = String::new();
    let before = read_ids(&mut first, &mut buffer, |ids| ids.len() >= 40).await;
    drop(first); // the client goes away mid-way
    let last = *before.last().unwrap();
    let mut second = follow(&s, Some(last)).await;
    assert_eq!(second.status(), 200);
    appender.await.unwrap();
    let head = s.app.store.head().await.unwrap().position;
    let mut buffer = String::new();
    let after = read_ids(&mut second, &mut buffer, |ids| ids.last() == Some(&head)).await;
    let all: Vec<u64> = before.into_iter().chain(after).collect();
    assert_eq!(all, (1..=head).collect::<Vec<_>>());
    assert!(head >= APPENDS);
}

async fn followers_beyond_the_limit_are_refused(db: TestDb) {
    let config = format!("{TOKEN_CONFIG}\n[audit]\nfollowers_max = 1\n");
    let s = TestServer::start(&db, &config).await;
    let held = follow(&s, None).await;
    assert_eq!(held.status(), 200);
    let refused = follow(&s, None).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().get("retry-after").is_some());
    // Pages are not follows: still served
    let (status, _, _) = get(&s, "/audit/events", Some(ADMIN)).await;
    assert_eq!(status, 200);
    drop(held);
}

const PASSWORD_CONFIG: &str = r#"
admin_token = "admin-token-admin-token-admin-token-0123"
default_audience = "https://api.example"
[[scopes]]
name = "profile"
description = "See your profile"
default = true
"#;

async fn get_json(s: &TestServer, path: &str) -> (u16, Value) {
    let (status, _, body) = get(s, path, Some(ADMIN)).await;
    (status, serde_json::from_str(&body).unwrap())
}

async fn as_of_answers_whether_a_delegation_was_active_then(db: TestDb) {
    let s = TestServer::start(&db, PASSWORD_CONFIG).await;
    let secret = common::flows::register_app(
        &s,
        "legacy",
        &["profile"],
        json!({"grant_types": ["password", "refresh_token"]}),
    )
    .await;
    common::users::add_user(&s, "ann", "correct horse battery", json!({})).await;
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(("legacy", &secret)),
            &[
                ("grant_type", "password"),
                ("username", "ann"),
                ("password", "correct horse battery"),
                ("scope", "profile"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let claims = common::flows::claims(body["access_token"].as_str().unwrap());
    let (jti, sub) = (claims["jti"].as_str().unwrap(), claims["sub"].as_str().unwrap());
    let (_, _, page) = get(&s, "/audit/events?type=DelegationCreated", Some(ADMIN)).await;
    let created = &lines(&page)[0];
    let delegation = created["payload"]["delegation_id"].as_str().unwrap().to_owned();
    let created_at = created["position"].as_u64().unwrap();
    let issued_head = s.app.store.head().await.unwrap().position;
    let before_revocation = consent_ledger::audit::events::format_time(
        s.app.store.read_from(issued_head, 1).await.unwrap()[0].recorded_at,
    );

    s.advance(60);
    s.app
        .store
        .append(consent_ledger::store::AppendRequest::to_stream(
            format!("delegation-{delegation}"),
            consent_ledger::store::ExpectedVersion::Any,
            vec![projections::Event::DelegationRevoked(
                projections::event::DelegationRevoked {
                    v: projections::event::V1,
                    delegation_id: delegation.clone(),
                    reason: projections::event::RevocationReason::RevokedByUser,
                    at: s.now(),
                },
            )],
        ))
        .await
        .unwrap();

    // Then: active, holding the scope, its token active; by position and by time alike
    for as_of in [issued_head.to_string(), before_revocation.clone()] {
        let (status, then) = get_json(&s, &format!("/audit/delegations/{delegation}?as_of={as_of}")).await;
        assert_eq!(status, 200, "{then}");
        assert_eq!(then["delegation"]["active"], true, "{then}");
        assert_eq!(then["delegation"]["scopes_held"], json!(["profile"]));
        assert_eq!(then["active_tokens"][0]["jti"], jti, "{then}");
        assert_eq!(then["as_of"]["position"], issued_head);
    }
    // Now: revoked, nothing active
    let (status, now) = get_json(&s, &format!("/audit/delegations/{delegation}")).await;
    assert_eq!(status, 200);
    assert_eq!(now["delegation"]["active"], false, "{now}");
    assert_eq!(now["active_tokens"], json!([]));
    // Before it was created, it was not there
    let (status, _) = get_json(
        &s,
        &format!("/audit/delegations/{delegation}?as_of={}", created_at - 1),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&s, "/audit/delegations/nope").await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&s, &format!("/audit/delegations/{delegation}?as_of=soon")).await;
    assert_eq!(status, 400);

    // The subject, then and now
    let (status, then) = get_json(&s, &format!("/audit/subjects/{sub}?as_of={before_revocation}")).await;
    assert_eq!(status, 200);
    assert_eq!(then["delegations"][0]["active"], true, "{then}");
    assert_eq!(then["active_tokens"][0]["jti"], jti);
    let (_, now) = get_json(&s, &format!("/audit/subjects/{sub}")).await;
    assert_eq!(now["delegations"][0]["active"], false, "{now}");
    assert_eq!(now["active_tokens"], json!([]));

    // A token's explanation is what `audit explain --json` prints
    let (status, explained) = get_json(&s, &format!("/audit/tokens/{jti}")).await;
    assert_eq!(status, 200);
    let expected = consent_ledger::audit::explain::explain(s.app.store.as_ref(), jti)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(explained, expected);
    assert_eq!(explained["decision_trail"]["scopes"][0]["scope"], "profile");
    let (status, _) = get_json(&s, "/audit/tokens/unknown").await;
    assert_eq!(status, 404);
    // Without credentials, nothing
    for path in [
        format!("/audit/tokens/{jti}"),
        format!("/audit/delegations/{delegation}"),
        format!("/audit/subjects/{sub}"),
    ] {
        let (status, _, body) = get(&s, &path, None).await;
        assert_eq!(status, 401, "{path}");
        assert!(!body.contains(jti), "{body}");
    }
}

/// Runs `consent-ledger audit export ARGS` against `db`: exit code and stdout.
fn export(db: &TestDb, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
        .arg("--database")
        .arg(&db.url)
        .arg("--quiet")
        .args(["audit", "export"])
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn export_writes_the_lines_of_the_api(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let (_, service_secret) = auditor_and_service(&s).await;
    for _ in 0..3 {
        assert_eq!(token(&s, ("svc", &service_secret), "read").await.0, 200);
    }
    let (_, _, everything) = get(&s, "/audit/events?limit=1000", Some(ADMIN)).await;
    let (code, exported) = export(&db, &[]);
    assert_eq!(code, 0);
    assert_eq!(exported, everything);
    let (_, _, issued) = get(
        &s,
        "/audit/events?type=TokenIssued&after=2&limit=1000",
        Some(ADMIN),
    )
    .await;
    let (code, exported) = export(&db, &["--type", "TokenIssued", "--after", "2"]);
    assert_eq!(code, 0);
    assert_eq!(exported, issued);
    assert_eq!(lines(&exported).len(), 3);
    let (code, _) = export(&db, &["--from", "yesterday"]);
    assert_ne!(code, 0);
}

on_both_stores!(
    export_writes_the_lines_of_the_api,
    as_of_answers_whether_a_delegation_was_active_then,
    a_follower_gets_every_event_once_in_order_across_a_reconnect,
    followers_beyond_the_limit_are_refused,
    only_auditors_and_the_admin_read_the_audit_api,
    the_auditor_setting_is_validated,
    event_pages_filter_and_link_to_the_next,
);

//! Test databases: a fresh SQLite file, or a fresh PostgreSQL schema, per test.
//!
//! PostgreSQL tests run when `CONSENT_LEDGER_TEST_POSTGRES` names a server
//! (e.g. `postgres://postgres@127.0.0.1:5432/test`); CI sets it, and then an unreachable server fails
//! the run instead of skipping.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use consent_ledger::clock::Clock;

use consent_ledger::clock::ManualClock;
use consent_ledger::store::{self, EventStore};
use sqlx::Connection;

pub const POSTGRES_ENV: &str = "CONSENT_LEDGER_TEST_POSTGRES";

/// A database for one test.
pub struct TestDb {
    pub url: String,
    pub kind: Kind,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        TestDb {
            url,
            kind: Kind::Sqlite,
            _dir: Some(dir),
        }
    }

    /// A fresh schema on the configured server; `None` (the test is skipped) when none is configured.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(base) = std::env::var(POSTGRES_ENV) else {
            eprintln!("skipped: set {POSTGRES_ENV} to run the PostgreSQL variant");
            return None;
        };
        let schema = format!("t_{}", consent_ledger::ids::id());
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={base} is unreachable: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(TestDb {
            url: format!("{base}{sep}options[search_path]={schema}"),
            kind: Kind::Postgres,
            _dir: None,
        })
    }

    pub async fn open(&self) -> Arc<dyn EventStore> {
        store::open(&self.url).await.unwrap()
    }

    /// The store, stamping appends from `clock` (a server's manual clock).
    pub async fn open_with_clock(&self, clock: &ManualClock) -> Arc<dyn EventStore> {
        store::open_with_clock(&self.url, clock.handle()).await.unwrap()
    }

    /// Runs raw SQL against the database, as an attacker with database access would.
    pub async fn exec(&self, sql: &str) {
        match self.kind {
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }
}

/// Runs each named `async fn(TestDb)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::TestDb::sqlite()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::common::TestDb::postgres().await {
                    super::$name(db).await
                }
            }
        }
    )*};
}

/// A server as its clients see it: a base URL. Every HTTP helper takes one, so it drives a server in
/// this test's runtime ([`TestServer`] dereferences to it) and a server process alike.
pub struct Node {
    pub base: String,
    pub http: reqwest::Client,
}

/// A server running in this test's runtime on an ephemeral port.
pub struct TestServer {
    node: Node,
    pub app: consent_ledger::app::AppRef,
    /// The server's clock (and its store's): stopped at the second the server started, moved only by
    /// the test ([`TestServer::advance`]).
    pub clock: ManualClock,
    _keys: tempfile::TempDir,
}

impl std::ops::Deref for TestServer {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

/// Scopes and a bootstrap client most token tests use.
pub const TOKEN_CONFIG: &str = r#"
admin_token = "admin-token-admin-token-admin-token-0123"
default_audience = "https://api.example"
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

impl TestServer {
    /// Starts a server over `db` configured with `toml` (issuer and key directory are filled in).
    pub async fn start(db: &TestDb, toml: &str) -> TestServer {
        Self::start_with(db, toml, None).await
    }

    /// Starts a server configured from `file`, which a policy reload reads again.
    pub async fn start_from_file(db: &TestDb, file: &std::path::Path) -> TestServer {
        let toml = std::fs::read_to_string(file).unwrap();
        Self::start_with(db, &toml, Some(file.to_owned())).await
    }

    async fn start_with(db: &TestDb, toml: &str, file: Option<std::path::PathBuf>) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let keys = tempfile::tempdir().unwrap();
        let mut config = consent_ledger::config::Config::parse("test.toml", toml).unwrap();
        config.issuer = base.clone();
        config.key_dir = keys.path().to_owned();
        config.validate("test.toml").unwrap();
        let clock = ManualClock::starting_now();
        let store = db.open_with_clock(&clock).await;
        let now = clock.now();
        let mut app = consent_ledger::startup::start(store, config, now).await.unwrap();
        app.config_file = file;
        let app = Arc::new(app);
        let router = consent_ledger::http::router(app.clone());
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
        TestServer {
            node: Node {
                base,
                http: reqwest::Client::new(),
            },
            app,
            clock,
            _keys: keys,
        }
    }

    /// The server's current second.
    pub fn now(&self) -> i64 {
        self.app.now()
    }

    /// Lets `seconds` pass on the server's clock (and its store's).
    pub fn advance(&self, seconds: i64) {
        self.clock.advance(seconds);
    }
}

impl Node {
    /// Registers a client through the admin API; returns its secret (if one was generated).
    pub async fn register(&self, body: serde_json::Value) -> Option<String> {
        let r = self
            .http
            .post(format!("{}/admin/clients", self.base))
            .bearer_auth("admin-token-admin-token-admin-token-0123")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let v: serde_json::Value = r.json().await.unwrap();
        v["client_secret"].as_str().map(str::to_owned)
    }

    /// POSTs a form with optional Basic credentials; returns status, headers and JSON body.
    pub async fn post_form(
        &self,
        path: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A client-credentials `TokenIssued` for `jti`, as the store tests append it.
pub fn issued(jti: &str) -> projections::Event {
    projections::Event::TokenIssued(projections::event::TokenIssued {
        v: projections::event::V1,
        jti: jti.into(),
        kind: projections::event::TokenKind::Access,
        client_id: "c1".into(),
        subject: "c1".into(),
        delegation_id: None,
        scopes: vec!["read".into()],
        audience: vec!["api".into()],
        kid: "k1".into(),
        grant_type: "client_credentials".into(),
        issued_at: 100,
        expires_at: 400,
        decision_trail: serde_json::json!([]),
        policy_version: Some("p1".into()),
        act: None,
        may_act: None,
        dpop_jkt: None,
    })
}

/// A trusted issuer's keys and the assertions it signs.
pub mod assertions;
/// A headless browser (chromedriver) and a client callback endpoint.
pub mod browser;
/// Authorization flows driven over HTTP (authorize, consent, code exchange).
pub mod flows;
/// Server processes (the binary itself).
pub mod process;
/// Users and signing in (the login pages).
pub mod users;

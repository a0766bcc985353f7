//! Test databases: a fresh SQLite file, or a fresh PostgreSQL schema, per test.
//!
//! PostgreSQL tests run when `CONSENT_LEDGER_TEST_POSTGRES` names a server
//! (e.g. `postgres://postgres@127.0.0.1:5432/test`); CI sets it, and then an unreachable server fails
//! the run instead of skipping.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

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
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
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

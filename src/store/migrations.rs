//! The schema migrations, embedded in the binary so one file is all an operator deploys.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

/// Every migration: version, description, SQLite text, PostgreSQL text. The two folders move in lockstep;
/// a test checks that each lists exactly these versions.
pub const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "ledger",
        include_str!("../../migrations/sqlite/0001_ledger.sql"),
        include_str!("../../migrations/postgres/0001_ledger.sql"),
    ),
    (
        2,
        "used assertions",
        include_str!("../../migrations/sqlite/0002_used_assertions.sql"),
        include_str!("../../migrations/postgres/0002_used_assertions.sql"),
    ),
    (
        3,
        "users and codes",
        include_str!("../../migrations/sqlite/0003_users_and_codes.sql"),
        include_str!("../../migrations/postgres/0003_users_and_codes.sql"),
    ),
    (
        4,
        "streams",
        include_str!("../../migrations/sqlite/0004_streams.sql"),
        include_str!("../../migrations/postgres/0004_streams.sql"),
    ),
    (
        5,
        "trusted issuers",
        include_str!("../../migrations/sqlite/0005_trusted_issuers.sql"),
        include_str!("../../migrations/postgres/0005_trusted_issuers.sql"),
    ),
    (
        6,
        "device authorizations",
        include_str!("../../migrations/sqlite/0006_device_authorizations.sql"),
        include_str!("../../migrations/postgres/0006_device_authorizations.sql"),
    ),
    (
        7,
        "backchannel requests",
        include_str!("../../migrations/sqlite/0007_backchannel_requests.sql"),
        include_str!("../../migrations/postgres/0007_backchannel_requests.sql"),
    ),
    (
        8,
        "checkpoints",
        include_str!("../../migrations/sqlite/0008_checkpoints.sql"),
        include_str!("../../migrations/postgres/0008_checkpoints.sql"),
    ),
    (
        9,
        "audit indexes",
        include_str!("../../migrations/sqlite/0009_audit_indexes.sql"),
        include_str!("../../migrations/postgres/0009_audit_indexes.sql"),
    ),
];

/// Which database's migrations to use.
#[derive(Debug, Clone, Copy)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The migrator for `dialect`.
pub fn migrator(dialect: Dialect) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sqlite, postgres)| {
            let sql = match dialect {
                Dialect::Sqlite => sqlite,
                Dialect::Postgres => postgres,
            };
            Migration::new(
                *version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                AssertSqlSafe(*sql).into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// The newest migration version, which a ready database must have applied.
pub fn latest_version() -> i64 {
    MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions_in(dir: &str) -> Vec<i64> {
        let path = format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR"));
        let mut v: Vec<i64> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .map(|n| n.split('_').next().unwrap().parse().unwrap())
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn both_migration_folders_list_exactly_the_embedded_versions() {
        let embedded: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(versions_in("sqlite"), embedded);
        assert_eq!(versions_in("postgres"), embedded);
    }
}

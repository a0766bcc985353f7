//! The operator's commands: configuration errors, client registration, key rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::TestDb;
use consent_ledger::store;
use projections::clients::Client;
use projections::keys::{KeyStatus, SigningKey};

fn run(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
        .current_dir(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("ISSUER")
        .env_remove("BIND")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_invalid_config_is_refused_with_the_file_the_key_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[scopes]]\nname = \"read\"\n[[clients]]\nclient_id = \"x\"\nname = \"X\"\nscopes = [\"write\"]\nsecret_sha256 = \"00\"\n",
    )
    .unwrap();
    let (ok, _, err) = run(dir.path(), &["--config", "bad.toml", "serve"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "error: bad.toml: clients[0].scopes: scope \"write\" is not defined under [[scopes]]"
    );
    std::fs::write(dir.path().join("consent-ledger.toml"), "issuer = \"ftp://x\"\n").unwrap();
    let (ok, _, err) = run(dir.path(), &["migrate"]);
    assert!(!ok);
    assert!(err.starts_with("error: consent-ledger.toml: issuer: "), "{err}");
}

#[tokio::test]
async fn clients_add_shows_the_secret_once_and_keys_rotate_retires_the_old_key() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    // `clients add` refuses scopes the configuration does not declare (see below).
    std::fs::write(
        dir.path().join("consent-ledger.toml"),
        "[[scopes]]\nname = \"read\"\n",
    )
    .unwrap();
    let (ok, out, err) = run(
        dir.path(),
        &[
            "--database",
            &db.url,
            "clients",
            "add",
            "--id",
            "svc",
            "--name",
            "Service",
            "--scope",
            "read",
            "--kind",
            "first_party",
        ],
    );
    assert!(ok, "{err}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_owned();
    assert_eq!(secret.len(), 43, "256 bits in base64url");
    let (ok, _, err) = run(
        dir.path(),
        &[
            "--database",
            &db.url,
            "clients",
            "add",
            "--id",
            "svc",
            "--name",
            "Again",
        ],
    );
    assert!(!ok && err.contains("already exists"), "{err}");

    for _ in 0..2 {
        let (ok, out, err) = run(dir.path(), &["--database", &db.url, "keys", "rotate"]);
        assert!(ok && out.starts_with("current signing key: "), "{out} {err}");
    }
    let store = db.open().await;
    let client: Client = store::get(store.as_ref(), "svc").await.unwrap().unwrap();
    assert_eq!(
        client.spec.secret_hash,
        Some(consent_ledger::clients::hash_secret(&secret))
    );
    let events = store.read_from(1, 100).await.unwrap();
    assert!(!events.iter().any(|e| e.payload.contains(&secret)));
    let keys: Vec<SigningKey> = store::find(store.as_ref(), Default::default()).await.unwrap();
    let mut statuses: Vec<KeyStatus> = keys.iter().map(|k| k.status).collect();
    statuses.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(statuses, vec![KeyStatus::Current, KeyStatus::Retired]);
    // Private halves are owner-only files in the key directory, never in the ledger.
    #[cfg(unix)]
    for entry in std::fs::read_dir(dir.path().join("data/keys")).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            entry.unwrap().metadata().unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    store.close().await;
}

//! Local users, on SQLite and PostgreSQL: the `users` commands through the built binary, the events they
//! append, credentials kept out of the ledger, and password and TOTP verification.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::TestDb;
use consent_ledger::store::{self, EventStore};
use consent_ledger::users::{self, UserError, totp};
use projections::users::User;
use serde_json::json;

/// Runs the binary with `stdin` as standard input; returns success, stdout, stderr.
fn run(db: &TestDb, args: &[&str], stdin: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
        .current_dir(dir.path())
        .arg("--database")
        .arg(&db.url)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("ISSUER")
        .env_remove("BIND")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts a refused command: non-zero exit and one `error:` line naming `what`.
fn refused(db: &TestDb, args: &[&str], stdin: &str, what: &str) {
    let (ok, _, err) = run(db, args, stdin);
    assert!(!ok, "{args:?} succeeded");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(what),
        "{err}"
    );
}

/// Every stored event's payload and metadata, and every projection row, as text.
async fn ledger_text(store: &dyn EventStore) -> String {
    let mut text = String::new();
    for e in store.read_from(1, 10_000).await.unwrap() {
        text.push_str(&e.payload);
        text.push_str(&e.metadata);
    }
    for row in store.all_rows().await.unwrap() {
        text.push_str(&row.state.to_string());
    }
    text
}

async fn user_events(store: &dyn EventStore, username: &str) -> Vec<String> {
    store
        .read_from(1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.stream_id == format!("user-{username}"))
        .map(|e| e.event_type)
        .collect()
}

async fn the_users_commands_keep_credentials_out_of_the_ledger(db: TestDb) {
    let password = "first-password-123";
    let (ok, out, err) = run(
        &db,
        &[
            "users",
            "add",
            "alice",
            "--attributes",
            r#"{"dept":"eng"}"#,
            "--password-stdin",
        ],
        &format!("{password}\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("username: alice"), "{out}");
    let subject = out
        .lines()
        .find_map(|l| l.strip_prefix("subject: "))
        .unwrap()
        .to_owned();
    assert_eq!(subject.len(), 32);

    refused(&db, &["users", "add", "alice"], "", "already exists");
    refused(&db, &["users", "add", "not a name"], "", "username");
    refused(
        &db,
        &["users", "add", "bob", "--attributes", "[1]"],
        "",
        "JSON object",
    );
    refused(
        &db,
        &["users", "add", "bob", "--password-stdin"],
        "short\n",
        "at least 8",
    );
    refused(&db, &["users", "set-password", "alice"], "short\n", "at least 8");
    refused(
        &db,
        &["users", "set-password", "nobody"],
        "long-enough-pw\n",
        "does not exist",
    );
    refused(
        &db,
        &["users", "set-attributes", "alice", "nope"],
        "",
        "JSON object",
    );
    refused(&db, &["users", "enroll-totp", "nobody"], "", "does not exist");
    refused(&db, &["users", "disable", "nobody"], "", "does not exist");

    let second = "second password, with spaces ";
    let (ok, _, err) = run(&db, &["users", "set-password", "alice"], &format!("{second}\r\n"));
    assert!(ok, "{err}");
    let (ok, _, err) = run(
        &db,
        &["users", "set-attributes", "alice", r#"{"dept":"ops","level":3}"#],
        "",
    );
    assert!(ok, "{err}");
    let (ok, out, err) = run(&db, &["users", "enroll-totp", "alice"], "");
    assert!(ok, "{err}");
    let secret_b32 = out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap()
        .to_owned();
    let uri = out
        .lines()
        .find_map(|l| l.strip_prefix("uri: "))
        .unwrap()
        .to_owned();
    assert_eq!(secret_b32.len(), 32, "160 bits");
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={secret_b32}")),
        "{uri}"
    );
    let secret = totp::base32_decode(&secret_b32).unwrap();

    let store = db.open().await;
    let now = store.clock().now();
    // What the CLI stored works: the second password (line ending stripped, spaces kept) and the secret.
    let alice = users::authenticate(store.as_ref(), "alice", second, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.subject, subject);
    assert!(
        users::authenticate(store.as_ref(), "alice", password, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        users::verify_totp(store.as_ref(), "alice", &totp::code_at(&secret, now), now)
            .await
            .unwrap()
    );

    let (ok, _, err) = run(
        &db,
        &["users", "disable", "alice", "--reason", "left the company"],
        "",
    );
    assert!(ok, "{err}");
    refused(&db, &["users", "disable", "alice"], "", "already disabled");
    assert!(
        users::authenticate(store.as_ref(), "alice", second, now)
            .await
            .unwrap()
            .is_none()
    );

    let user: User = store::get(store.as_ref(), "alice").await.unwrap().unwrap();
    assert_eq!(user.attributes, json!({"dept": "ops", "level": 3}));
    assert!(user.has_password && user.totp_enabled);
    assert_eq!(user.disabled.as_deref(), Some("left the company"));
    assert_eq!(
        user_events(store.as_ref(), "alice").await,
        [
            "UserRegistered",
            "UserPasswordSet",
            "UserPasswordSet",
            "UserAttributesSet",
            "UserTotpEnrolled",
            "UserDisabled"
        ]
    );
    assert!(
        user_events(store.as_ref(), "bob").await.is_empty(),
        "refused commands append nothing"
    );

    // No password, hash or secret anywhere in the ledger or its projections.
    let phc = store
        .off_ledger_get("password", "alice", now)
        .await
        .unwrap()
        .unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    let hash_part = phc.rsplit('$').next().unwrap().to_owned();
    let salt_part = phc.rsplit('$').nth(1).unwrap().to_owned();
    let text = ledger_text(store.as_ref()).await;
    for secret_text in [
        password,
        second.trim(),
        phc.as_str(),
        hash_part.as_str(),
        salt_part.as_str(),
        secret_b32.as_str(),
        &secret_b32.to_lowercase(),
        &hex::encode(&secret),
    ] {
        assert!(!text.contains(secret_text), "the ledger holds {secret_text:?}");
    }
    store.close().await;
}

#[allow(clippy::disallowed_methods)] // comparing Argon2's real work takes a real stopwatch
async fn passwords_verify_with_the_same_work_for_everyone(db: TestDb) {
    let store = db.open().await;
    let s = store.as_ref();
    let now = s.clock().now();
    let alice = users::add(s, "alice", json!({}), now).await.unwrap();
    assert!(!alice.has_password);
    assert!(matches!(
        users::add(s, "alice", json!({}), now).await,
        Err(UserError::Exists(_))
    ));
    assert!(matches!(
        users::set_password(s, "alice", "short", now).await,
        Err(UserError::Password(users::PasswordError::TooShort))
    ));
    // No password yet: nothing matches, not even an empty one.
    assert!(!users::verify_password(s, &alice, "", now).await.unwrap());
    assert!(
        users::authenticate(s, "alice", "anything-at-all", now)
            .await
            .unwrap()
            .is_none()
    );

    users::set_password(s, "alice", "pa55word-pa55word", now)
        .await
        .unwrap();
    let alice = users::get(s, "alice").await.unwrap().unwrap();
    assert!(alice.has_password);
    assert!(
        users::verify_password(s, &alice, "pa55word-pa55word", now)
            .await
            .unwrap()
    );
    assert!(
        !users::verify_password(s, &alice, "pa55word-pa55wor", now)
            .await
            .unwrap()
    );
    assert_eq!(
        users::authenticate(s, "alice", "pa55word-pa55word", now)
            .await
            .unwrap()
            .unwrap()
            .subject,
        alice.subject
    );
    assert!(
        users::authenticate(s, "nobody", "pa55word-pa55word", now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        users::authenticate(s, "", "pa55word-pa55word", now)
            .await
            .unwrap()
            .is_none()
    );

    // An unknown user costs an Argon2 verification like a known one (no early answer).
    let t = std::time::Instant::now();
    users::authenticate(s, "alice", "wrong-wrong-wrong", now)
        .await
        .unwrap();
    let known = t.elapsed();
    let t = std::time::Instant::now();
    users::authenticate(s, "nobody-at-all", "wrong-wrong-wrong", now)
        .await
        .unwrap();
    let unknown = t.elapsed();
    assert!(unknown * 3 > known, "unknown {unknown:?} vs known {known:?}");
    store.close().await;
}

async fn a_totp_code_is_good_once(db: TestDb) {
    let store = db.open().await;
    let s = store.as_ref();
    let now = 1_700_000_000;
    users::add(s, "alice", json!({}), now).await.unwrap();
    assert!(
        !users::verify_totp(s, "alice", "123456", now).await.unwrap(),
        "nothing enrolled"
    );
    let secret = users::enroll_totp(s, "alice", now).await.unwrap();
    assert_eq!(secret.len(), 20);
    assert!(users::get(s, "alice").await.unwrap().unwrap().totp_enabled);

    let code = totp::code_at(&secret, now);
    assert!(users::verify_totp(s, "alice", &code, now).await.unwrap());
    assert!(
        !users::verify_totp(s, "alice", &code, now).await.unwrap(),
        "reused"
    );
    assert!(
        !users::verify_totp(s, "alice", &code, now + 20).await.unwrap(),
        "reused later"
    );
    // The previous step is older than the one used: refused too.
    let previous = totp::code_at(&secret, now - 30);
    assert!(!users::verify_totp(s, "alice", &previous, now).await.unwrap());
    // The next step's code is fine, once.
    let next = totp::code_at(&secret, now + 30);
    assert!(users::verify_totp(s, "alice", &next, now + 5).await.unwrap());
    assert!(!users::verify_totp(s, "alice", &next, now + 31).await.unwrap());
    // Far from now: refused.
    let later = totp::code_at(&secret, now + 300);
    assert!(!users::verify_totp(s, "alice", &later, now + 35).await.unwrap());

    users::remove_totp(s, "alice", now).await.unwrap();
    assert!(!users::get(s, "alice").await.unwrap().unwrap().totp_enabled);
    let code = totp::code_at(&secret, now + 120);
    assert!(!users::verify_totp(s, "alice", &code, now + 120).await.unwrap());
    assert!(matches!(
        users::remove_totp(s, "alice", now).await,
        Err(UserError::Invalid(_))
    ));
    assert!(
        store
            .off_ledger_get("totp", "alice", now)
            .await
            .unwrap()
            .is_none()
    );
    store.close().await;
}

on_both_stores!(
    the_users_commands_keep_credentials_out_of_the_ledger,
    passwords_verify_with_the_same_work_for_everyone,
    a_totp_code_is_good_once,
);

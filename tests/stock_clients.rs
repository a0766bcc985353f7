//! Stock OAuth client libraries (pinned in `tests/clients/requirements.txt`) against a running server,
//! on SQLite and PostgreSQL: what a developer using them gets, through discovery alone.
//!
//! The clients live in a Python venv that `scripts/client-venv` creates (`target/clients-venv`). Without
//! it these tests skip, unless `CONSENT_LEDGER_STOCK_CLIENTS=required` (CI), when they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::assertions::{IssuerKey, jwks, toml_inline};
use common::flows::{claims, register_app};
use common::users::add_user;
use common::{TestDb, TestServer};
use serde_json::{Value, json};

const REQUIRED_ENV: &str = "CONSENT_LEDGER_STOCK_CLIENTS";

/// The venv's Python, or `None` (skip) when there is none and the clients are not required.
fn client_python() -> Option<PathBuf> {
    let venv = std::env::var_os("CLIENTS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/clients-venv"));
    let python = venv.join("bin/python");
    if python.exists() {
        return Some(python);
    }
    if std::env::var(REQUIRED_ENV).as_deref() == Ok("required") {
        panic!(
            "{REQUIRED_ENV}=required but {} is missing: run scripts/client-venv",
            python.display()
        );
    }
    eprintln!("skipped: run scripts/client-venv (or set {REQUIRED_ENV}=required to fail instead)");
    None
}

/// What a stock client script did: whether it exited 0, and the JSON it printed.
struct ClientRun {
    ok: bool,
    output: Value,
}

/// Runs `tests/clients/{script}` with `args` in the clients' venv, off the async runtime (the server
/// under test runs on it). `None` when the venv is missing and not required.
async fn run_stock_client(script: &str, args: Vec<String>) -> Option<ClientRun> {
    let python = client_python()?;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new(python).arg(path).args(args).output())
            .await
            .unwrap()
            .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let output = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "{script} printed no JSON\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Some(ClientRun {
        ok: out.status.success(),
        output,
    })
}

const ISS: &str = "https://idp.partner.example";
const URN: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

async fn authlib_gets_a_token_with_a_jwt_bearer_assertion(db: TestDb) {
    let key = IssuerKey::new("partner-1");
    let s = TestServer::start(&db, &partner_config(&key)).await;
    let secret = register_app(
        &s,
        "partner",
        &["profile", "admin"],
        json!({"grant_types": [URN]}),
    )
    .await;
    let ann = add_user(&s, "ann", "correct horse battery", json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("issuer.pem");
    std::fs::write(&pem, &key.private_pem).unwrap();
    let args = |subject: &str| -> Vec<String> {
        [
            &s.base,
            "partner",
            &secret,
            pem.to_str().unwrap(),
            ISS,
            subject,
            "partner-1",
            "profile admin",
        ]
        .map(str::to_owned)
        .to_vec()
    };

    let Some(run) = run_stock_client("jwt_bearer.py", args("ann")).await else {
        return;
    };
    assert!(run.ok, "{}", run.output);
    assert_eq!(run.output["token_type"], "Bearer");
    // The issuer bounds the scopes: admin is not issued, though the client may ask for it
    assert_eq!(run.output["scope"], "profile");
    let token = claims(run.output["access_token"].as_str().unwrap());
    assert_eq!(token["sub"], ann.subject);
    assert_eq!(token["client_id"], "partner");

    // Each assertion Authlib signs has its own jti: a second one works too
    let again = run_stock_client("jwt_bearer.py", args("ann")).await.unwrap();
    assert!(again.ok, "{}", again.output);

    // An assertion about someone who is not a user here: the client sees invalid_grant
    let nobody = run_stock_client("jwt_bearer.py", args("mallory")).await.unwrap();
    assert!(!nobody.ok);
    assert_eq!(nobody.output["error"], "invalid_grant", "{}", nobody.output);
}

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The partner issuer trusted for every user by username, for `profile` only.
fn partner_config(key: &IssuerKey) -> String {
    format!(
        r#"
admin_token = "admin-token-admin-token-admin-token-0123"
default_audience = "https://api.example"
[[scopes]]
name = "profile"
description = "See your profile"
default = true
[[scopes]]
name = "admin"
description = "Administer"
[[trusted_issuers]]
issuer = "{ISS}"
subjects = "all"
subject_mapping = {{ by = "username" }}
scopes = ["profile"]
jwks = {}
"#,
        toml_inline(&jwks(&[key]))
    )
}

async fn authlib_exchanges_a_partners_token_for_one_of_this_servers(db: TestDb) {
    let key = IssuerKey::new("partner-1");
    let s = TestServer::start(&db, &partner_config(&key)).await;
    let secret = register_app(
        &s,
        "gateway",
        &["profile", "admin"],
        json!({"grant_types": [EXCHANGE], "token_exchange": {"impersonation": true}}),
    )
    .await;
    let ann = add_user(&s, "ann", "correct horse battery", json!({})).await;
    let now = s.now();
    let partner_token = key.sign(&json!({
        "iss": ISS, "sub": "ann", "aud": format!("{}/token", s.base), "iat": now, "exp": now + 60,
        "jti": "partner-session-1",
    }));
    let args = [
        &s.base,
        "gateway",
        &secret,
        &partner_token,
        JWT_TYPE,
        "profile admin",
    ]
    .map(str::to_owned)
    .to_vec();

    let Some(run) = run_stock_client("token_exchange.py", args.clone()).await else {
        return;
    };
    assert!(run.ok, "{}", run.output);
    assert_eq!(
        run.output["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    // The partner bounds the scopes, and ann is who the token is about
    assert_eq!(run.output["scope"], "profile");
    let token = claims(run.output["access_token"].as_str().unwrap());
    assert_eq!(token["sub"], ann.subject);
    assert_eq!(token["client_id"], "gateway");

    // The same partner token again: the client sees invalid_grant
    let again = run_stock_client("token_exchange.py", args).await.unwrap();
    assert!(!again.ok);
    assert_eq!(again.output["error"], "invalid_grant", "{}", again.output);
}

on_both_stores!(
    authlib_gets_a_token_with_a_jwt_bearer_assertion,
    authlib_exchanges_a_partners_token_for_one_of_this_servers,
);

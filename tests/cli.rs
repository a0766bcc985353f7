//! The operator's commands: configuration errors, client registration, key rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};

use common::TestDb;
use common::process::{Server, free_bind, wait_ready};
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

/// `--log-format json`: every line a log pipeline reads is one JSON object, and a request's lines carry
/// its `X-Request-Id`.
#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let bind = free_bind();
    let mut server = Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
        .current_dir(dir.path())
        .args(["--log-format", "json", "serve", "--bind", &bind])
        .env_remove("DATABASE_URL")
        .env_remove("ISSUER")
        .env_remove("BIND")
        .env("RUST_LOG", "info,consent_ledger=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{bind}");
    wait_ready(&http, &base).await;
    let r = http
        .get(format!("{base}/healthz"))
        .header("X-Request-Id", "support-ticket-7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "support-ticket-7");
    server.kill().unwrap();
    let out = server.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "listening"),
        "{logs}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["id"] == "support-ticket-7" && l["fields"]["status"] == 200),
        "{logs}"
    );
}

/// The README's quick start, step by step, in a fresh directory: serve with the example configuration,
/// register a client with the scope it declares, and get a token for it. Only the port differs.
#[tokio::test]
async fn the_readme_quick_start_ends_in_a_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("examples")).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.toml"),
        dir.path().join("examples/quickstart.toml"),
    )
    .unwrap();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for step in [
        "-- --config examples/quickstart.toml serve",
        "-- --config examples/quickstart.toml clients add --id demo --name Demo --scope messages:read",
        "-u \"demo:$SECRET\" -d grant_type=client_credentials -d scope=messages:read http://127.0.0.1:8080/token",
    ] {
        assert!(
            readme.contains(step),
            "the README no longer says {step:?}; keep this test in step"
        );
    }
    let bind = free_bind();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
            .current_dir(dir.path())
            .args(["--config", "examples/quickstart.toml", "serve", "--bind", &bind])
            .env_remove("DATABASE_URL")
            .env_remove("ISSUER")
            .env_remove("BIND")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let base = format!("http://{bind}");
    wait_ready(&http, &base).await;

    let (ok, out, err) = run(
        dir.path(),
        &[
            "--config",
            "examples/quickstart.toml",
            "clients",
            "add",
            "--id",
            "demo",
            "--name",
            "Demo",
            "--scope",
            "messages:read",
        ],
    );
    assert!(ok, "{err}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_owned();
    let response = http
        .post(format!("{base}/token"))
        .basic_auth("demo", Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "messages:read")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "messages:read");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    // docs/grants.md's token exchange example, against the same configuration
    let grants = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grants.md")).unwrap();
    let exchange = "urn:ietf:params:oauth:grant-type:token-exchange";
    for step in [
        "clients add --id reports --name Reports \\\n    --grant-type client_credentials --grant-type urn:ietf:params:oauth:grant-type:token-exchange \\\n    --scope messages:read --token-exchange-impersonation",
        "-d subject_token=\"$TOKEN\" -d subject_token_type=urn:ietf:params:oauth:token-type:access_token",
    ] {
        assert!(grants.contains(step), "docs/grants.md no longer says {step:?}");
    }
    let (ok, out, err) = run(
        dir.path(),
        &[
            "--config",
            "examples/quickstart.toml",
            "clients",
            "add",
            "--id",
            "reports",
            "--name",
            "Reports",
            "--grant-type",
            "client_credentials",
            "--grant-type",
            exchange,
            "--scope",
            "messages:read",
            "--token-exchange-impersonation",
        ],
    );
    assert!(ok, "{err}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_owned();
    let post = |form: Vec<(&'static str, String)>| {
        http.post(format!("{base}/token"))
            .basic_auth("reports", Some(&secret))
            .form(&form)
            .send()
    };
    let body: serde_json::Value = post(vec![
        ("grant_type", "client_credentials".into()),
        ("scope", "messages:read".into()),
    ])
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    let response = post(vec![
        ("grant_type", exchange.into()),
        ("subject_token", token),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:access_token".into(),
        ),
        ("scope", "messages:read".into()),
    ])
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["scope"], "messages:read");
}

/// Registering a client with a scope no configuration declares used to succeed silently; every token
/// request for it then failed with `invalid_scope`.
#[test]
fn clients_add_refuses_a_scope_the_configuration_does_not_declare() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("consent-ledger.toml"),
        "[[scopes]]\nname = \"messages:read\"\n[[scopes]]\nname = \"account.{id}.read\"\n",
    )
    .unwrap();
    let add = |id: &str, scopes: &[&str]| {
        let mut args = vec!["--database", &db.url, "clients", "add", "--id", id, "--name", "X"];
        for s in scopes {
            args.extend(["--scope", s]);
        }
        run(dir.path(), &args)
    };
    let (ok, _, err) = add("a", &["messages:read", "messages:write"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "error: scope \"messages:write\" is not defined under [[scopes]], so it could never be granted; \
         declare it in the configuration first (see docs/configuration.md)"
    );
    // A template, or a value a template matches, is declared.
    let (ok, _, err) = add("b", &["messages:read", "account.{id}.read", "account.42.read"]);
    assert!(ok, "{err}");
}

/// `clients add --allowed-origin` registers an assisted token client; a bad origin is refused.
#[tokio::test]
async fn clients_add_takes_the_assisted_token_origins() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("consent-ledger.toml"),
        "[[scopes]]\nname = \"profile\"\n",
    )
    .unwrap();
    let add = |id: &str, origin: &str| {
        run(
            dir.path(),
            &[
                "--database",
                &db.url,
                "clients",
                "add",
                "--id",
                id,
                "--name",
                "SPA",
                "--auth-method",
                "none",
                "--grant-type",
                "urn:curity:params:grant-type:assisted-token",
                "--allowed-origin",
                origin,
                "--scope",
                "profile",
            ],
        )
    };
    let (ok, _, err) = add("bad", "https://spa.example/app");
    assert!(!ok);
    assert!(err.contains("allowed origin"), "{err}");
    let (ok, _, err) = add("spa", "https://spa.example");
    assert!(ok, "{err}");
    let store = db.open().await;
    let client: Client = store::get(store.as_ref(), "spa").await.unwrap().unwrap();
    assert_eq!(client.spec.allowed_origins, ["https://spa.example"]);
}

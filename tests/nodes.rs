//! Two server processes on one database, each with its own key directory and the same key-encryption key,
//! under mixed load through both: client credentials, code flows, refreshes (one raced across the nodes),
//! revocations, a key rotation by a third process and a policy reload on one node. Afterwards the ledger
//! is whole: the chain verifies, positions have no gap, a fresh fold equals the stored rows, no refresh
//! token was rotated twice, and no request was answered with a 5xx.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::flows::{REDIRECT, claims, code_flow, register_app};
use common::process::{Server, binary, free_bind, wait_ready};
use common::users::login;
use common::{Node, TOKEN_CONFIG, TestDb};
use serde_json::{Value, json};

const KEK: &str = "5f0b6e1c2d3a49587a6b5c4d3e2f10213243546576879a8b9cadbecfd0e1f203";
const ADMIN: &str = "admin-token-admin-token-admin-token-0123";

/// A node's configuration: shared issuer (the address clients use), own key directory, shared KEK.
fn write_config(path: &Path, issuer: &str, key_dir: &Path, write_description: &str) {
    let toml = format!(
        "issuer = \"{issuer}\"\nkey_dir = \"{}\"\nkey_encryption_key = \"{KEK}\"\n{}",
        key_dir.display(),
        TOKEN_CONFIG.replace("Send messages", write_description),
    );
    std::fs::write(path, toml).unwrap();
}

/// Starts `serve` on `bind` with `config`.
fn serve(db: &TestDb, config: &Path, bind: &str) -> Server {
    Server(
        binary()
            .args(["--database", &db.url, "--config"])
            .arg(config)
            .args(["serve", "--bind", bind])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Runs a command of the binary to its end; returns its exit code and standard output.
fn run(db: &TestDb, config: Option<&Path>, args: &[&str]) -> (i32, String) {
    let mut c = binary();
    c.args(["--quiet", "--database", &db.url]);
    if let Some(config) = config {
        c.arg("--config").arg(config);
    }
    let out = c.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Every answer either node gave, by status, so the test can say none was a 5xx.
#[derive(Default)]
struct Answers(std::sync::Mutex<BTreeMap<u16, usize>>);

impl Answers {
    fn saw(&self, status: u16) -> u16 {
        *self.0.lock().unwrap().entry(status).or_default() += 1;
        status
    }

    fn server_errors(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum()
    }
}

async fn post(
    node: &Node,
    answers: &Answers,
    path: &str,
    client: (&str, &str),
    form: &[(&str, &str)],
) -> (u16, Value) {
    let (status, _, body) = node.post_form(path, Some(client), form).await;
    (answers.saw(status), body)
}

async fn refresh(node: &Node, answers: &Answers, client: (&str, &str), token: &str) -> (u16, Value) {
    post(
        node,
        answers,
        "/token",
        client,
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await
}

/// The `kid` an access token was signed with.
fn kid(jwt: &str) -> String {
    use base64::Engine;
    let header = jwt.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

on_both_stores!(two_nodes_under_mixed_load_keep_one_whole_ledger);

async fn two_nodes_under_mixed_load_keep_one_whole_ledger(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = db.open().await;
        let now = store.clock().now();
        consent_ledger::users::add(store.as_ref(), "alice", json!({}), now)
            .await
            .unwrap();
        consent_ledger::users::set_password(store.as_ref(), "alice", "correct horse battery", now)
            .await
            .unwrap();
        store.close().await;
    }
    let binds = [free_bind(), free_bind()];
    // The issuer clients see is the first node's address, as a load balancer's would be.
    let issuer = format!("http://{}", binds[0]);
    let configs: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("node{i}.toml"))).collect();
    for (i, config) in configs.iter().enumerate() {
        write_config(
            config,
            &issuer,
            &dir.path().join(format!("keys{i}")),
            "Send messages",
        );
    }
    // Both start at the same moment, each with an empty key directory of its own.
    let _servers: Vec<Server> = (0..2).map(|i| serve(&db, &configs[i], &binds[i])).collect();
    let nodes: Vec<Arc<Node>> = binds
        .iter()
        .map(|b| {
            Arc::new(Node {
                base: format!("http://{b}"),
                http: reqwest::Client::new(),
            })
        })
        .collect();
    for node in &nodes {
        wait_ready(&node.http, &node.base).await;
    }
    let answers = Arc::new(Answers::default());

    // Clients registered on one node are known to the other.
    let machine = nodes[0]
        .register(json!({
            "client_id": "machine", "name": "Machine", "grant_types": ["client_credentials"],
            "scopes": ["read", "write"],
        }))
        .await
        .unwrap();
    let app_secret = register_app(&nodes[1], "app", &["read", "write"], json!({})).await;
    let app = ("app", app_secret.as_str());

    // Background load: client credentials through both nodes until the end of the test.
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicUsize::new(0));
    let kids = Arc::new(std::sync::Mutex::new(BTreeMap::<usize, BTreeSet<String>>::new()));
    let mut background = Vec::new();
    for worker in 0..4 {
        let (nodes, answers, stop, issued, kids, machine) = (
            nodes.clone(),
            answers.clone(),
            stop.clone(),
            issued.clone(),
            kids.clone(),
            machine.clone(),
        );
        background.push(tokio::spawn(async move {
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let n = i % 2;
                let (status, body) = post(
                    &nodes[n],
                    &answers,
                    "/token",
                    ("machine", &machine),
                    &[("grant_type", "client_credentials"), ("scope", "read")],
                )
                .await;
                assert_eq!(status, 200, "node {n}: {body}");
                let token = body["access_token"].as_str().unwrap();
                kids.lock().unwrap().entry(n).or_default().insert(kid(token));
                issued.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }

    // Code flows: signed in on one node, redeemed on the other (sessions are shared, not sticky).
    let cookie = login(&nodes[0], "alice", "correct horse battery").await;
    let mut refresh_tokens = Vec::new();
    for i in 0..6 {
        let body = code_flow(&nodes[i % 2], &cookie, app, "read write", &["read", "write"]).await;
        assert_eq!(
            claims(body["access_token"].as_str().unwrap())["iss"],
            issuer.as_str()
        );
        refresh_tokens.push(body["refresh_token"].as_str().unwrap().to_owned());
    }
    assert!(REDIRECT.starts_with("https://"));

    // Refreshes alternate between the nodes.
    for round in 0..4 {
        for (i, token) in refresh_tokens.iter_mut().enumerate() {
            let (status, body) = refresh(&nodes[(i + round) % 2], &answers, app, token).await;
            assert_eq!(status, 200, "delegation {i}, round {round}: {body}");
            *token = body["refresh_token"].as_str().unwrap().to_owned();
        }
    }

    // One refresh token presented to both nodes at once: exactly one rotation; the other answer is a
    // refusal, and the delegation ends (reuse of a rotated token).
    let raced = refresh_tokens.remove(0);
    let (a, b) = tokio::join!(
        refresh(&nodes[0], &answers, app, &raced),
        refresh(&nodes[1], &answers, app, &raced),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "{a:?} {b:?}");
    let refused = if a.0 == 400 { &a.1 } else { &b.1 };
    assert_eq!(refused["error"], "invalid_grant", "{refused}");

    // A revocation on one node holds on the other.
    let revoked = refresh_tokens.remove(0);
    let (status, _) = post(&nodes[1], &answers, "/revoke", app, &[("token", &revoked)]).await;
    assert_eq!(status, 200);
    let (status, body) = refresh(&nodes[0], &answers, app, &revoked).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // A key rotation by a third process with yet another key directory: both nodes find the new
    // private key sealed in the database and sign with it once their ten-second cache ends.
    let rotator = dir.path().join("rotator.toml");
    write_config(
        &rotator,
        &issuer,
        &dir.path().join("keys-rotator"),
        "Send messages",
    );
    let (code, out) = run(&db, Some(&rotator), &["keys", "rotate"]);
    assert_eq!(code, 0, "{out}");
    let new_kid = out
        .lines()
        .find_map(|l| l.strip_prefix("current signing key: "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    // Up to 40 s: the nodes' caches last 10 s, and a loaded machine is slow.
    for attempt in 0.. {
        let kids = kids.lock().unwrap().clone();
        let signed_by_both = |kid: &String| kids.values().all(|k| k.contains(kid));
        if signed_by_both(&new_kid) {
            break;
        }
        assert!(
            attempt < 200,
            "the nodes did not both sign with the rotated key: {kids:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for i in 0..2 {
        let files: Vec<String> = dir
            .path()
            .join(format!("keys{i}"))
            .read_dir()
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !files.iter().any(|f| f.starts_with(&new_kid)),
            "node {i} signs with a key it never had as a file: {files:?}"
        );
    }

    // A policy reload on one node: its next tokens cite the new version; the other keeps its own.
    write_config(
        &configs[0],
        &issuer,
        &dir.path().join("keys0"),
        "Send messages, reloaded",
    );
    let r = nodes[0]
        .http
        .post(format!("{}/admin/policy/reload", nodes[0].base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(answers.saw(r.status().as_u16()), 200);
    let reloaded: Value = r.json().await.unwrap();
    for (i, token) in refresh_tokens.iter_mut().enumerate() {
        let (status, body) = refresh(&nodes[i % 2], &answers, app, token).await;
        assert_eq!(status, 200, "{body}");
        *token = body["refresh_token"].as_str().unwrap().to_owned();
    }

    let before = issued.load(Ordering::Relaxed);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in background {
        task.await.unwrap();
    }
    assert!(before > 20, "the background load ran: {before} tokens");
    assert_eq!(answers.server_errors(), 0, "{:?}", answers.0.lock().unwrap());
    drop(_servers);

    // The ledger both nodes wrote is one whole ledger.
    let (code, out) = run(&db, None, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&db, None, &["audit", "replay"]);
    assert_eq!(code, 0, "{out}");
    let store = db.open().await;
    let mut expected = 1;
    let mut rotations: BTreeMap<String, usize> = BTreeMap::new();
    let mut versions = BTreeSet::new();
    loop {
        let page = store.read_from(expected, 1000).await.unwrap();
        if page.is_empty() {
            break;
        }
        for e in page {
            assert_eq!(e.position, expected, "positions have no gap");
            expected += 1;
            if e.event_type == "RefreshTokenRotated" {
                *rotations.entry(e.stream_id.clone()).or_default() += 1;
            }
            if e.event_type == "TokenIssued" {
                let payload: Value = serde_json::from_str(&e.payload).unwrap();
                if let Some(v) = payload["policy_version"].as_str() {
                    versions.insert(v.to_owned());
                }
            }
        }
    }
    assert!(rotations.len() >= 20, "{rotations:?}");
    assert!(
        rotations.values().all(|n| *n == 1),
        "a refresh token was rotated twice: {rotations:?}"
    );
    assert!(
        versions.contains(reloaded["policy_version"].as_str().unwrap_or_default()),
        "tokens cite the reloaded policy {reloaded}: {versions:?}"
    );
    assert!(versions.len() >= 2, "{versions:?}");
}

//! `consent-ledger relay` against a real `nats-server -js`, on both databases: killed mid-stream,
//! restarted beside a second relay while events keep coming, the stream holds every position exactly
//! once, in order, and folding it gives the state `audit replay` prints.
//!
//! Each test starts its own `nats-server` on a free port with a temporary store directory. Without
//! `nats-server` on the path the tests skip, unless `CONSENT_LEDGER_TEST_NATS=required` (CI), where they
//! fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use common::TestDb;
use consent_ledger::relay::message::LedgerMessage;
use consent_ledger::store::{AppendRequest, EventStore, ExpectedVersion};
use projections::LedgerState;
use proptest::strategy::{Strategy, ValueTree};

const NATS_ENV: &str = "CONSENT_LEDGER_TEST_NATS";

/// A `nats-server -js` child process, killed when dropped.
struct Nats {
    url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// Starts a server; `None` (the test skips) when `nats-server` is missing and CI did not ask for it.
    async fn start() -> Option<Nats> {
        let found = Command::new("nats-server").arg("--version").output().is_ok();
        if !found {
            if std::env::var(NATS_ENV).as_deref() == Ok("required") {
                panic!("{NATS_ENV}=required but nats-server is not on the path");
            }
            eprintln!("skipped: nats-server is not installed (set {NATS_ENV}=required to fail instead)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("nats://127.0.0.1:{port}");
        let nats = Nats {
            url,
            child,
            _dir: dir,
        };
        // Up to 20 s.
        for attempt in 0.. {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            assert!(attempt < 400, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(nats)
    }

    async fn jetstream(&self) -> jetstream::Context {
        jetstream::new(async_nats::connect(self.url.as_str()).await.unwrap())
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A relay process, killed (SIGKILL) when dropped.
struct Relay(Child);

impl Relay {
    fn start(db: &TestDb, nats: &Nats, extra: &[&str]) -> Relay {
        let child = Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
            .arg("--database")
            .arg(&db.url)
            .args(["relay", "--nats", &nats.url, "--poll-ms", "20"])
            .args(extra)
            .env_remove("DATABASE_URL")
            .env_remove("RELAY_NATS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Relay(child)
    }

    /// SIGKILL: no chance to finish what it was doing.
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Appends `count` random events of every type (each to its own stream, in appends of up to 200).
async fn append_random(store: &dyn EventStore, count: usize, seed: u8) {
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        proptest::test_runner::Config::default(),
        proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &[seed; 32]),
    );
    let mut events = Vec::new();
    while events.len() < count {
        events.extend(
            projections::testing::events(200)
                .new_tree(&mut runner)
                .unwrap()
                .current(),
        );
    }
    events.truncate(count);
    for chunk in events.chunks(200) {
        let mut req = AppendRequest::default();
        for e in chunk {
            req = req.and(AppendRequest::to_stream(
                e.stream_id(),
                ExpectedVersion::Any,
                vec![e.clone()],
            ));
        }
        let mut seen = BTreeSet::new();
        req.expectations.retain(|x| seen.insert(x.stream_id.clone()));
        store.append(req).await.unwrap();
    }
}

async fn last_sequence(js: &jetstream::Context) -> u64 {
    match js.get_stream("LEDGER").await {
        Ok(s) => s.get_info().await.map_or(0, |i| i.state.last_sequence),
        Err(_) => 0,
    }
}

/// Waits until the stream's last sequence reaches `at_least`; returns it.
async fn wait_for(js: &jetstream::Context, at_least: u64, within: Duration) -> u64 {
    let tick = Duration::from_millis(5);
    let attempts = within.as_millis() / tick.as_millis();
    for attempt in 0.. {
        let last = last_sequence(js).await;
        if last >= at_least {
            return last;
        }
        assert!(attempt < attempts, "the stream reached only {last} of {at_least}");
        tokio::time::sleep(tick).await;
    }
    unreachable!()
}

/// Every message of the stream, checked to hold position N at sequence N.
async fn stream_messages(js: &jetstream::Context) -> Vec<LedgerMessage> {
    let stream = js.get_stream("LEDGER").await.unwrap();
    let info = stream.get_info().await.unwrap();
    assert_eq!(info.state.first_sequence, 1);
    assert_eq!(info.state.messages, info.state.last_sequence, "{:?}", info.state);
    let mut out = Vec::new();
    for seq in 1..=info.state.last_sequence {
        let m = stream.get_raw_message(seq).await.unwrap();
        let body: LedgerMessage = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(body.position, seq, "sequence {seq}");
        assert_eq!(
            m.headers.get("Ledger-Position").unwrap().as_str(),
            seq.to_string()
        );
        assert_eq!(m.subject.as_str(), format!("ledger.{}", body.event_type));
        out.push(body);
    }
    out
}

fn replay_until(db: &TestDb, position: u64) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
        .arg("--database")
        .arg(&db.url)
        .args(["--quiet", "audit", "replay", "--until", &position.to_string()])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["position"], position);
    v["state"].clone()
}

async fn a_relay_killed_mid_stream_and_two_relays_after_it_publish_every_event_once_in_order(db: TestDb) {
    let Some(nats) = Nats::start().await else { return };
    let js = nats.jetstream().await;
    let store = db.open().await;
    append_random(store.as_ref(), 3_000, 1).await;

    // One publication in flight at a time, so the kill lands mid-stream.
    let first = Relay::start(&db, &nats, &["--max-in-flight", "1"]);
    let reached = wait_for(&js, 1, Duration::from_secs(60)).await;
    first.kill();
    let at_kill = last_sequence(&js).await;
    assert!(
        reached >= 1 && at_kill < 3_000,
        "the relay was to be killed mid-stream; it had published {at_kill}"
    );

    // Two relays at once (two nodes), while the ledger keeps growing.
    let a = Relay::start(&db, &nats, &[]);
    let b = Relay::start(&db, &nats, &["--max-in-flight", "7"]);
    for round in 0..5u8 {
        append_random(store.as_ref(), 300, 10 + round).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let head = store.head().await.unwrap().position;
    assert_eq!(head, 4_500);
    wait_for(&js, head, Duration::from_secs(120)).await;
    // Let both relays poll again: neither may add anything.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.kill();
    b.kill();

    let messages = stream_messages(&js).await;
    assert_eq!(messages.len() as u64, head);
    let stored = store.read_from(1, 10_000).await.unwrap();
    let mut state = LedgerState::default();
    for (m, s) in messages.iter().zip(&stored) {
        assert_eq!(&m.to_stored(), s, "position {}", s.position);
        state.apply(&m.to_stored().decode().unwrap());
    }
    assert!(
        messages
            .iter()
            .map(|m| m.event_type.as_str())
            .collect::<BTreeSet<_>>()
            .len()
            > 5,
        "the history was to mix event types"
    );
    assert_eq!(serde_json::to_value(&state).unwrap(), replay_until(&db, head));
    store.close().await;
}

async fn a_stream_holding_messages_the_relay_did_not_publish_stops_it(db: TestDb) {
    let Some(nats) = Nats::start().await else { return };
    let js = nats.jetstream().await;
    let store = db.open().await;
    append_random(store.as_ref(), 10, 2).await;
    js.create_stream(jetstream::stream::Config {
        name: "LEDGER".into(),
        subjects: vec!["ledger.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("ledger.Something", "not a ledger event".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
        .arg("--database")
        .arg(&db.url)
        .args(["relay", "--nats", &nats.url])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("stream sequence 1 holds"), "{err}");
    assert_eq!(last_sequence(&js).await, 1, "nothing was published after it");
    store.close().await;
}

on_both_stores!(
    a_relay_killed_mid_stream_and_two_relays_after_it_publish_every_event_once_in_order,
    a_stream_holding_messages_the_relay_did_not_publish_stops_it,
);

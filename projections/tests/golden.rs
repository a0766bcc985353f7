#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every shape of every event ever written folds to the recorded state (see `tests/fixtures/events/`).
//!
//! `UPDATE_GOLDEN=1` rewrites the snapshot instead of comparing; review its diff before committing it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use projections::{Event, LedgerState, Metadata, RecordedEvent};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// The fixture files in fold order, each as (file name, stream id, payload text).
fn stored() -> Vec<(String, String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(fixtures().join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let stream = doc["stream_id"].as_str().unwrap().to_owned();
            // The payload as a writer stored it: serde_json's text of the object, like the ledger's.
            (name, stream, doc["payload"].to_string())
        })
        .collect()
}

fn recorded() -> Vec<RecordedEvent> {
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    stored()
        .into_iter()
        .enumerate()
        .map(|(i, (name, stream_id, payload))| {
            let event: Event = serde_json::from_str(&payload).unwrap_or_else(|e| {
                panic!("{name} no longer reads (add an upcast, do not edit the file): {e}")
            });
            assert!(
                name[4..].starts_with(event.event_type()),
                "{name} reads as {}",
                event.event_type()
            );
            assert_eq!(event.stream_id(), stream_id, "{name} belongs to another stream");
            let version = versions.entry(stream_id.clone()).or_default();
            *version += 1;
            RecordedEvent {
                position: i as u64 + 1,
                stream_id,
                version: *version,
                event,
                metadata: Metadata::default(),
                recorded_at: (i as i64 + 1) * 1_000_000,
                hash: String::new(),
            }
        })
        .collect()
}

#[test]
fn every_event_ever_written_folds_to_the_recorded_state() {
    let state = LedgerState::fold(&recorded());
    let actual = serde_json::to_string_pretty(&state).unwrap() + "\n";
    let snapshot = fixtures().join("golden-state.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&snapshot, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap();
    if actual != expected {
        let line = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .map_or(actual.lines().count().min(expected.lines().count()), |n| n);
        panic!(
            "the golden events fold differently from {} (first difference at line {}).\n\
             An old event must keep folding the same way: add an upcast in projections/src/upcast.rs.\n\
             Only if the change is meant, rewrite the snapshot with UPDATE_GOLDEN=1 and review its diff.\n\
             --- expected\n{}\n+++ actual\n{}",
            snapshot.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("<end>"),
            actual.lines().nth(line).unwrap_or("<end>"),
        );
    }
}

#[test]
fn the_fixtures_hold_every_event_type() {
    let present: BTreeSet<String> = recorded()
        .iter()
        .map(|e| e.event.event_type().to_owned())
        .collect();
    let missing: Vec<_> = Event::TYPES.iter().filter(|t| !present.contains(**t)).collect();
    assert!(missing.is_empty(), "add a fixture for {missing:?}");
}

#[test]
fn an_upcast_event_is_written_back_in_todays_shape_and_reads_the_same() {
    for e in recorded() {
        let written = serde_json::to_string(&e.event).unwrap();
        let read: Event = serde_json::from_str(&written).unwrap();
        assert_eq!(read, e.event, "{written}");
    }
}

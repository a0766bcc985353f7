//! Old payload shapes, brought up to today's before an event is read.
//!
//! The ledger is never rewritten, so every shape a payload has ever been written in must keep reading the
//! same way. Each change of shape adds a step here (never an edit of a stored event, never an edit of the
//! fixtures in `tests/fixtures/events/`): a payload's `"v"` names its schema version, and within a version
//! the steps fill what older writers left out. The golden test in `projections/tests/golden.rs` folds one
//! event of every shape and compares with a recorded state, so a change that breaks an old shape fails it.
//!
//! Pure: JSON in, JSON out.

use serde_json::{Map, Value};

/// Why a payload cannot be brought to today's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpcastError(pub String);

impl std::fmt::Display for UpcastError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UpcastError {}

/// Brings `payload` (a whole event: `type`, `v` and fields) to today's shape of its type, in place.
pub fn upcast(payload: &mut Value) -> Result<(), UpcastError> {
    let Some(object) = payload.as_object_mut() else {
        return Err(UpcastError("an event payload is a JSON object".into()));
    };
    let Some(event_type) = object.get("type").and_then(Value::as_str).map(str::to_owned) else {
        return Err(UpcastError("an event payload names its \"type\"".into()));
    };
    match object.get("v").and_then(Value::as_u64) {
        Some(1) => v1(&event_type, object),
        Some(other) => Err(UpcastError(format!(
            "{event_type}: unsupported schema version {other}, expected 1"
        ))),
        None => Err(UpcastError(format!(
            "{event_type}: a payload carries its schema version \"v\""
        ))),
    }
}

/// Version 1 grew by fields added with a default; writers before each addition left the field out.
fn v1(event_type: &str, payload: &mut Map<String, Value>) -> Result<(), UpcastError> {
    match event_type {
        "ClientRegistered" | "ClientUpdated" => {
            let Some(client) = payload.get_mut("client").and_then(Value::as_object_mut) else {
                return Err(UpcastError(format!("{event_type}: \"client\" is an object")));
            };
            client_spec(client);
        }
        // Before the consent page existed, nothing was shown; today a null `shown` is also left out.
        "ConsentGranted" => fill(payload, "shown", Value::Null),
        _ => {}
    }
    Ok(())
}

fn client_spec(client: &mut Map<String, Value>) {
    // Resource indicators (RFC 8707) arrived with the token API: older clients named none.
    fill(client, "resources", Value::Array(Vec::new()));
    // PAR and the refresh-reuse grace window arrived with the code flow; both are also left out today
    // when off.
    fill(
        client,
        "require_pushed_authorization_requests",
        Value::Bool(false),
    );
    fill(client, "refresh_reuse_grace_seconds", Value::from(0));
}

fn fill(object: &mut Map<String, Value>, field: &str, value: Value) {
    object.entry(field).or_insert(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_consent_written_before_the_consent_page_reads_with_nothing_shown() {
        let mut old = json!({"type": "ConsentGranted", "v": 1, "consent_id": "c"});
        upcast(&mut old).unwrap();
        assert_eq!(old["shown"], Value::Null);
        assert!(old.as_object().unwrap().contains_key("shown"));
    }

    #[test]
    fn a_field_already_present_is_left_as_written() {
        let mut now = json!({"type": "ClientRegistered", "v": 1, "client": {"resources": ["https://api"]}});
        upcast(&mut now).unwrap();
        assert_eq!(now["client"]["resources"], json!(["https://api"]));
        assert_eq!(now["client"]["refresh_reuse_grace_seconds"], json!(0));
    }

    #[test]
    fn an_unknown_version_or_a_missing_one_is_refused() {
        assert!(upcast(&mut json!({"type": "TokenRevoked", "v": 2})).is_err());
        assert!(upcast(&mut json!({"type": "TokenRevoked"})).is_err());
        assert!(upcast(&mut json!(["TokenRevoked"])).is_err());
    }
}

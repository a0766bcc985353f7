//! `audit explain <jti>`: why a token carries what it carries, from its `TokenIssued` event.

use projections::Event;
use projections::tokens::Token;
use serde_json::{Value, json};

use crate::store::{self, EventStore, StoreError};

/// The recorded explanation of one token, or `None` when the ledger holds no such `jti`.
pub async fn explain(store: &dyn EventStore, jti: &str) -> Result<Option<Value>, StoreError> {
    let Some(token) = store::get::<Token>(store, jti).await? else {
        return Ok(None);
    };
    let Some(stored) = store
        .read_from(token.issued_position, 1)
        .await?
        .into_iter()
        .next()
    else {
        return Err(StoreError::Corrupt(format!(
            "token {jti} cites position {} which is missing",
            token.issued_position
        )));
    };
    let recorded = stored.decode()?;
    let Event::TokenIssued(issued) = recorded.event else {
        return Err(StoreError::Corrupt(format!(
            "position {} is not the issuance of {jti}",
            token.issued_position
        )));
    };
    Ok(Some(json!({
        "jti": issued.jti,
        "position": recorded.position,
        "recorded_at_micros": recorded.recorded_at,
        "client_id": issued.client_id,
        "subject": issued.subject,
        "grant_type": issued.grant_type,
        "scopes": issued.scopes,
        "audience": issued.audience,
        "issued_at": issued.issued_at,
        "expires_at": issued.expires_at,
        "kid": issued.kid,
        "policy_version": issued.policy_version,
        "revoked_at": token.revoked_at,
        "act": issued.act,
        "may_act": issued.may_act,
        "decision_trail": issued.decision_trail,
    })))
}

/// A Unix time (seconds, as events hold it) in RFC 3339, UTC; a value that is not one is shown as it is.
fn rfc3339(v: &Value) -> String {
    v.as_i64()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| v.to_string())
}

/// Renders an explanation for a person; times in RFC 3339 (`--json` keeps the ledger's Unix seconds).
pub fn render(e: &Value) -> String {
    let s = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    let mut out = format!(
        "token {} (ledger position {})\n  client {}, subject {}, grant {}\n  issued {} expires {}{}\n  policy {}\n  scopes issued: {}\n",
        s(&e["jti"]),
        e["position"],
        s(&e["client_id"]),
        s(&e["subject"]),
        s(&e["grant_type"]),
        rfc3339(&e["issued_at"]),
        rfc3339(&e["expires_at"]),
        if e["revoked_at"].is_null() {
            String::new()
        } else {
            format!(", revoked {}", rfc3339(&e["revoked_at"]))
        },
        s(&e["policy_version"]),
        e["scopes"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    );
    // RFC 8693 `act`: each actor, the current one first.
    let mut act = &e["act"];
    while let Some(sub) = act["sub"].as_str() {
        out.push_str(&format!("  acted for by {sub}\n"));
        act = &act["act"];
    }
    let exchanged = &e["decision_trail"]["exchanged"];
    if let Some(from) = exchanged["subject_token"].as_str() {
        out.push_str(&format!(
            "  exchanged from {} {from}",
            s(&exchanged["subject_token_type"])
        ));
        if let Some(actor) = exchanged["actor_token"].as_str() {
            out.push_str(&format!(", actor token {actor}"));
        }
        out.push('\n');
    }
    if let Some(sub) = e["may_act"]["sub"].as_str() {
        out.push_str(&format!("  may be acted for by {sub}\n"));
    }
    for scope in e["decision_trail"]["scopes"].as_array().into_iter().flatten() {
        out.push_str(&format!("  scope {}", s(&scope["scope"])));
        if let Some(t) = scope["template"]
            .as_str()
            .filter(|t| Some(*t) != scope["scope"].as_str())
        {
            out.push_str(&format!(" (matches {t})"));
        }
        out.push_str(&format!(": {}", s(&scope["outcome"])));
        match scope["outcome"].as_str() {
            Some("issued") => {
                out.push_str(&format!(", consent {}", s(&scope["consent"]["from"])));
                if let Some(p) = scope["consent"]["position"].as_u64() {
                    out.push_str(&format!(" at position {p}"));
                }
                if scope["expires_at"].is_i64() {
                    out.push_str(&format!(", scope expires {}", rfc3339(&scope["expires_at"])));
                }
            }
            Some("denied") => out.push_str(&format!(": {}", s(&scope["reason"]))),
            _ => {}
        }
        out.push('\n');
        for a in scope["authorizers"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "    {} ({}): {}",
                s(&a["name"]),
                s(&a["type"]),
                s(&a["verdict"])
            ));
            if let Some(r) = a["reason"].as_str() {
                out.push_str(&format!(" — {r}"));
            }
            if let Some(c) = a.get("conditions") {
                out.push_str(&format!(" {c}"));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explanation_prints_times_as_rfc3339_not_unix_seconds() {
        let text = render(&json!({
            "jti": "j", "position": 7, "client_id": "c", "subject": "s", "grant_type": "client_credentials",
            "issued_at": 1_767_225_600, "expires_at": 1_767_225_900, "revoked_at": 1_767_225_660,
            "policy_version": "v", "scopes": ["read"],
            "decision_trail": {"scopes": [{"scope": "read", "outcome": "issued",
                "consent": {"from": "not_required"}, "expires_at": 1_767_229_200, "authorizers": []}]},
        }));
        assert!(
            text.contains(
                "issued 2026-01-01T00:00:00Z expires 2026-01-01T00:05:00Z, revoked 2026-01-01T00:01:00Z"
            ),
            "{text}"
        );
        assert!(text.contains("scope expires 2026-01-01T01:00:00Z"), "{text}");
        assert!(!text.contains("1767225600"), "{text}");
    }
}

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
        "decision_trail": issued.decision_trail,
    })))
}

/// Renders an explanation for a person.
pub fn render(e: &Value) -> String {
    let s = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    let mut out = format!(
        "token {} (ledger position {})\n  client {}, subject {}, grant {}\n  issued {} expires {}{}\n  policy {}\n  scopes issued: {}\n",
        s(&e["jti"]),
        e["position"],
        s(&e["client_id"]),
        s(&e["subject"]),
        s(&e["grant_type"]),
        e["issued_at"],
        e["expires_at"],
        if e["revoked_at"].is_null() {
            String::new()
        } else {
            format!(", revoked {}", e["revoked_at"])
        },
        s(&e["policy_version"]),
        e["scopes"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    );
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
                if let Some(x) = scope["expires_at"].as_i64() {
                    out.push_str(&format!(", scope expires {x}"));
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

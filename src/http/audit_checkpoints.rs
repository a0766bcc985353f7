//! `/audit/checkpoint-keys`, `/audit/checkpoints`, inclusion and consistency proofs: what an auditor
//! needs to check the ledger against signed checkpoints without trusting the database.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use projections::chain;
use serde_json::{Value, json};

use crate::app::AppRef;
use crate::audit::checkpoint::SignedCheckpoint;
use crate::audit::checkpointer::link;
use crate::audit::merkle::{self, ProofError};
use crate::store::StoreError;

/// Checkpoints per page of `GET /audit/checkpoints`, by default and at most.
pub const PAGE_DEFAULT: u32 = 100;
/// The most `limit` may ask for.
pub const PAGE_MAX: u32 = 1_000;

/// An audit API failure, as JSON.
#[derive(Debug)]
pub struct AuditError(StatusCode, String);

impl IntoResponse for AuditError {
    fn into_response(self) -> Response {
        let code = match self.0 {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::BAD_REQUEST => "invalid_request",
            StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
            _ => "server_error",
        };
        let mut r = (self.0, Json(json!({"error": code, "error_description": self.1}))).into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

impl From<StoreError> for AuditError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            tracing::warn!(error = %e, "audit");
            return AuditError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable".into(),
            );
        }
        tracing::error!(error = %e, "audit");
        AuditError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the ledger could not be read".into(),
        )
    }
}

fn bad_request(problem: impl Into<String>) -> AuditError {
    AuditError(StatusCode::BAD_REQUEST, problem.into())
}

fn not_found(problem: impl Into<String>) -> AuditError {
    AuditError(StatusCode::NOT_FOUND, problem.into())
}

/// Who may read checkpoints and proofs: the admin token, until auditor credentials exist.
fn authorize(app: &AppRef, headers: &HeaderMap) -> Result<(), AuditError> {
    match super::admin::presents_admin_token(app, headers) {
        Some(true) => Ok(()),
        None => Err(not_found("the audit API is not enabled")),
        Some(false) => Err(AuditError(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required".into(),
        )),
    }
}

/// The routes.
pub fn routes() -> axum::Router<AppRef> {
    axum::Router::new()
        .route("/audit/checkpoint-keys", get(keys))
        .route("/audit/checkpoints", get(list))
        .route("/audit/checkpoints/consistency", get(consistency))
        .route("/audit/events/{position}/proof", get(inclusion))
}

/// The query's parameters; a repeated one is refused.
fn params(query: Option<&str>) -> Result<HashMap<String, String>, AuditError> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(bad_request(format!("{k} is given more than once")));
        }
    }
    Ok(out)
}

/// A positive integer parameter, when present.
fn size_param(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, AuditError> {
    params
        .get(name)
        .map(|v| match v.parse::<u64>() {
            Ok(n) if n >= 1 && i64::try_from(n).is_ok() => Ok(n),
            _ => Err(bad_request(format!("{name} must be a positive integer"))),
        })
        .transpose()
}

fn required(params: &HashMap<String, String>, name: &str) -> Result<u64, AuditError> {
    size_param(params, name)?.ok_or_else(|| bad_request(format!("{name} is required")))
}

fn hexes(hashes: &[merkle::Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

async fn checkpoint(app: &AppRef, size: u64) -> Result<SignedCheckpoint, AuditError> {
    app.store
        .checkpoint(size)
        .await?
        .ok_or_else(|| not_found(format!("no checkpoint of size {size}")))
}

fn proof_error(e: ProofError) -> AuditError {
    tracing::error!(error = %e, "merkle proof");
    AuditError(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the proof could not be built: {e}"),
    )
}

/// `GET /audit/checkpoint-keys`: every checkpoint key's public JWK (public, like `/jwks`).
async fn keys(State(app): State<AppRef>) -> Result<Json<Value>, AuditError> {
    Ok(Json(json!({"keys": app.store.checkpoint_keys().await?})))
}

/// `GET /audit/checkpoints?before=SIZE&limit=N`: signed checkpoints, largest first.
async fn list(
    State(app): State<AppRef>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AuditError> {
    authorize(&app, &headers)?;
    let params = params(query.as_deref())?;
    let before = size_param(&params, "before")?;
    let limit = match size_param(&params, "limit")? {
        None => PAGE_DEFAULT,
        Some(n) if n <= u64::from(PAGE_MAX) => n as u32,
        Some(_) => return Err(bad_request(format!("limit must be at most {PAGE_MAX}"))),
    };
    let page = app.store.checkpoints_before(before, limit).await?;
    let next = (page.len() == limit as usize)
        .then(|| page.last().map(|c| c.position))
        .flatten();
    Ok(Json(json!({"checkpoints": page, "next_before": next})))
}

/// `GET /audit/events/{position}/proof?checkpoint=SIZE`: the event, its leaf input and its audit path
/// in the tree the checkpoint signs.
async fn inclusion(
    State(app): State<AppRef>,
    headers: HeaderMap,
    Path(position): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AuditError> {
    authorize(&app, &headers)?;
    let position = match position.parse::<u64>() {
        Ok(p) if p >= 1 && i64::try_from(p).is_ok() => p,
        _ => return Err(bad_request("the position must be a positive integer")),
    };
    let size = required(&params(query.as_deref())?, "checkpoint")?;
    if position > size {
        return Err(bad_request(format!(
            "event {position} is not covered by the checkpoint of size {size}"
        )));
    }
    let checkpoint = checkpoint(&app, size).await?;
    // The event and the one before it, whose hash its leaf input carries.
    let events = app.store.read_from(position - 1, 2).await?;
    let event = events
        .iter()
        .find(|e| e.position == position)
        .ok_or_else(|| not_found(format!("the ledger holds no event at position {position}")))?;
    let prev = match position {
        1 => chain::GENESIS,
        _ => events
            .first()
            .filter(|e| e.position == position - 1)
            .and_then(|e| chain::parse_hash(&e.hash))
            .ok_or_else(|| {
                AuditError::from(StoreError::Corrupt(format!(
                    "event {} is missing or its hash unreadable",
                    position - 1
                )))
            })?,
    };
    let index = position - 1;
    let nodes = app
        .store
        .merkle_nodes(&merkle::nodes_for_inclusion(index, size))
        .await?;
    let path = merkle::inclusion_proof(index, size, &mut merkle::source(&nodes)).map_err(proof_error)?;
    let input = chain::link_bytes(&prev, &link(event));
    Ok(Json(json!({
        "checkpoint": checkpoint,
        "leaf_index": index,
        "tree_size": size,
        "event": {
            "position": event.position,
            "stream_id": event.stream_id,
            "version": event.version,
            "event_type": event.event_type,
            "payload": event.payload,
            "metadata": event.metadata,
            "recorded_at": event.recorded_at,
            "prev_hash": hex::encode(prev),
            "hash": event.hash,
        },
        "leaf_input": B64.encode(&input),
        "audit_path": hexes(&path),
    })))
}

/// `GET /audit/checkpoints/consistency?from=SIZE&to=SIZE`: the proof that the later checkpoint's tree
/// extends the earlier one's.
async fn consistency(
    State(app): State<AppRef>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AuditError> {
    authorize(&app, &headers)?;
    let params = params(query.as_deref())?;
    let (from, to) = (required(&params, "from")?, required(&params, "to")?);
    if from > to {
        return Err(bad_request("from must not be larger than to"));
    }
    let (earlier, later) = (checkpoint(&app, from).await?, checkpoint(&app, to).await?);
    let nodes = app
        .store
        .merkle_nodes(&merkle::nodes_for_consistency(from, to))
        .await?;
    let proof = merkle::consistency_proof(from, to, &mut merkle::source(&nodes)).map_err(proof_error)?;
    Ok(Json(
        json!({"from": earlier, "to": later, "proof": hexes(&proof)}),
    ))
}

//! `/admin/clients`: client registration over HTTP, behind the configured admin bearer token.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use projections::clients::Client;
use projections::event::ClientSpec;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppRef;
use crate::clients::{self, RegistrationError};
use crate::oauth::client_auth::secrets_eq;
use crate::store::{self, AppendError, RowFilter};

/// An admin API failure, as JSON.
#[derive(Debug)]
pub struct AdminError(StatusCode, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let code = match self.0 {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::BAD_REQUEST => "invalid_request",
            _ => "server_error",
        };
        let mut r = (self.0, Json(json!({"error": code, "error_description": self.1}))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

impl From<RegistrationError> for AdminError {
    fn from(e: RegistrationError) -> Self {
        let status = match e {
            RegistrationError::Exists(_) => StatusCode::CONFLICT,
            RegistrationError::Unknown(_) => StatusCode::NOT_FOUND,
            RegistrationError::Invalid(_) => StatusCode::BAD_REQUEST,
        };
        AdminError(status, e.to_string())
    }
}

impl From<store::StoreError> for AdminError {
    fn from(e: store::StoreError) -> Self {
        tracing::error!(error = %e, "admin");
        AdminError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable".into(),
        )
    }
}

impl From<AppendError> for AdminError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Conflict { .. } => {
                AdminError(StatusCode::CONFLICT, "the client changed meanwhile; retry".into())
            }
            other => {
                tracing::error!(error = %other, "admin append");
                AdminError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the change could not be recorded".into(),
                )
            }
        }
    }
}

fn authorize(app: &AppRef, headers: &HeaderMap) -> Result<(), AdminError> {
    let expected = app.config.admin_token.as_deref();
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (expected, given) {
        (Some(e), Some(g)) if secrets_eq(e.as_bytes(), g.as_bytes()) => Ok(()),
        (None, _) => Err(AdminError(
            StatusCode::NOT_FOUND,
            "the admin API is not enabled".into(),
        )),
        _ => Err(AdminError(
            StatusCode::UNAUTHORIZED,
            "a valid admin bearer token is required".into(),
        )),
    }
}

/// A client as the admin API shows it: everything but the secret hash.
fn view(c: &Client) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.remove("secret_hash");
    }
    v
}

/// `POST /admin/clients`: registers a client; a generated secret is in this response only.
pub async fn create(
    State(app): State<AppRef>,
    headers: HeaderMap,
    Json(mut spec): Json<ClientSpec>,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    let existing: Option<Client> = store::get(app.store.as_ref(), &spec.client_id).await?;
    let secret = if spec.token_endpoint_auth_method.starts_with("client_secret") {
        Some(
            crate::ids::secret()
                .map_err(|_| AdminError(StatusCode::INTERNAL_SERVER_ERROR, "no randomness".into()))?,
        )
    } else {
        None
    };
    // Whatever hash the body carried, the only secret is the one generated here.
    spec.secret_hash = secret.as_deref().map(clients::hash_secret);
    let client_id = spec.client_id.clone();
    app.store
        .append(clients::register(existing.as_ref(), spec, app.now())?)
        .await?;
    let created: Option<Client> = store::get(app.store.as_ref(), &client_id).await?;
    let mut body = created.as_ref().map(view).unwrap_or(Value::Null);
    if let Some(s) = secret {
        body["client_secret"] = json!(s);
    }
    let mut r = (StatusCode::CREATED, Json(body)).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

/// `GET /admin/clients`.
pub async fn list(State(app): State<AppRef>, headers: HeaderMap) -> Result<Json<Value>, AdminError> {
    authorize(&app, &headers)?;
    let all: Vec<Client> = store::find(app.store.as_ref(), RowFilter::default()).await?;
    Ok(Json(
        json!({ "clients": all.iter().map(view).collect::<Vec<_>>() }),
    ))
}

/// `GET /admin/clients/{id}`.
pub async fn get(
    State(app): State<AppRef>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    authorize(&app, &headers)?;
    let c: Option<Client> = store::get(app.store.as_ref(), &id).await?;
    c.map(|c| Json(view(&c))).ok_or(AdminError(
        StatusCode::NOT_FOUND,
        format!("client {id} does not exist"),
    ))
}

/// `PUT /admin/clients/{id}`: replaces the attributes; the secret stays.
pub async fn update(
    State(app): State<AppRef>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(mut spec): Json<ClientSpec>,
) -> Result<Json<Value>, AdminError> {
    authorize(&app, &headers)?;
    if spec.client_id != id {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "client_id in the body differs from the path".into(),
        ));
    }
    let existing: Option<Client> = store::get(app.store.as_ref(), &id).await?;
    spec.secret_hash = existing.as_ref().and_then(|c| c.spec.secret_hash.clone());
    app.store
        .append(clients::update(existing.as_ref(), spec, app.now())?)
        .await?;
    get(State(app), headers, Path(id)).await
}

/// Body of a disable request.
#[derive(Debug, Deserialize)]
pub struct DisableInput {
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /admin/clients/{id}/disable`: the client can no longer authenticate; its tokens turn inactive.
pub async fn disable(
    State(app): State<AppRef>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(input): Json<DisableInput>,
) -> Result<Json<Value>, AdminError> {
    authorize(&app, &headers)?;
    let existing: Option<Client> = store::get(app.store.as_ref(), &id).await?;
    let reason = input
        .reason
        .unwrap_or_else(|| "disabled by an administrator".into());
    app.store
        .append(clients::disable(existing.as_ref(), &id, &reason, app.now())?)
        .await?;
    get(State(app), headers, Path(id)).await
}

/// `POST /admin/policy/reload`: re-reads the configuration file; the new policy applies to the next token.
pub async fn reload_policy(State(app): State<AppRef>, headers: HeaderMap) -> Result<Json<Value>, AdminError> {
    authorize(&app, &headers)?;
    match app.reload_policy(app.now()).await {
        Ok(version) => Ok(Json(json!({ "policy_version": version }))),
        Err(crate::app::PolicyError::Config(e)) => Err(AdminError(StatusCode::BAD_REQUEST, e.to_string())),
        Err(e) => {
            tracing::error!(error = %e, "policy reload");
            Err(AdminError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the policy could not be recorded".into(),
            ))
        }
    }
}

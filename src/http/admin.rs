//! `/admin/clients`: client registration over HTTP, behind the configured admin bearer token.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use projections::clients::Client;
use projections::event::{ClientAudience, ClientKind, ClientSpec};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppRef;
use crate::clients::{self, RegistrationError};
use crate::config::TokenExchangeConfig;
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

/// Whether the request carries the configured admin token as its bearer token; `None` when no admin
/// token is configured (every route it opens is then off). The one comparison every admin-token route
/// makes.
pub(crate) fn presents_admin_token(app: &AppRef, headers: &HeaderMap) -> Option<bool> {
    let expected = app.config.admin_token.as_deref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    Some(given.is_some_and(|g| secrets_eq(expected.as_bytes(), g.as_bytes())))
}

fn authorize(app: &AppRef, headers: &HeaderMap) -> Result<(), AdminError> {
    match presents_admin_token(app, headers) {
        Some(true) => Ok(()),
        None => Err(AdminError(
            StatusCode::NOT_FOUND,
            "the admin API is not enabled".into(),
        )),
        Some(false) => Err(AdminError(
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

/// The body of `POST /admin/clients` and `PUT /admin/clients/{id}`.
///
/// Its own type, not the persisted [`ClientSpec`], so that the API can change (a default, a renamed
/// field, a new convenience) without changing the shape of `ClientRegistered` in the ledger. It accepts
/// the JSON the API always has; a `secret_hash` in the body is ignored as it always was (the server
/// generates the only secret).
#[derive(Debug, Deserialize)]
pub struct ClientRequest {
    pub client_id: String,
    pub name: String,
    #[serde(default)]
    pub kind: ClientKind,
    #[serde(default)]
    pub audience: ClientAudience,
    #[serde(default)]
    pub dynamically_registered: bool,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default = "client_secret_basic")]
    pub token_endpoint_auth_method: String,
    #[serde(default)]
    pub jwks: Option<Value>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub metadata: Value,
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    #[serde(default)]
    pub delegation_lifetime_seconds: Option<i64>,
    #[serde(default)]
    pub consent_lifetime_seconds: Option<i64>,
    #[serde(default)]
    pub refresh_reuse_grace_seconds: u32,
    #[serde(default)]
    pub resource_server: bool,
    #[serde(default)]
    pub id_token_signed_response_alg: Option<String>,
    #[serde(default)]
    pub password_grant_second_factor_users: bool,
    #[serde(default)]
    pub token_exchange: Option<TokenExchangeConfig>,
    #[serde(default)]
    pub may_act: Option<String>,
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// OpenID CIBA: `poll` or `ping` (push is refused).
    #[serde(default)]
    pub backchannel_token_delivery_mode: Option<String>,
    #[serde(default)]
    pub backchannel_client_notification_endpoint: Option<String>,
    /// The assisted token flow: the origins that may frame `/assisted-token` for this client.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// May be granted the `audit` scope by client credentials (the audit API).
    #[serde(default)]
    pub auditor: bool,
}

fn client_secret_basic() -> String {
    "client_secret_basic".into()
}

impl ClientRequest {
    /// The spec to record, with the secret hash the server decided.
    fn into_spec(self, secret_hash: Option<String>) -> Result<ClientSpec, RegistrationError> {
        let backchannel_token_delivery_mode =
            clients::delivery_mode(self.backchannel_token_delivery_mode.as_deref())?;
        Ok(ClientSpec {
            client_id: self.client_id,
            name: self.name,
            kind: self.kind,
            audience: self.audience,
            dynamically_registered: self.dynamically_registered,
            redirect_uris: self.redirect_uris,
            grant_types: self.grant_types,
            scopes: self.scopes,
            token_endpoint_auth_method: self.token_endpoint_auth_method,
            secret_hash,
            jwks: self.jwks,
            jwks_uri: self.jwks_uri,
            resources: self.resources,
            metadata: self.metadata,
            require_pushed_authorization_requests: self.require_pushed_authorization_requests,
            delegation_lifetime_seconds: self.delegation_lifetime_seconds,
            consent_lifetime_seconds: self.consent_lifetime_seconds,
            refresh_reuse_grace_seconds: self.refresh_reuse_grace_seconds,
            resource_server: self.resource_server,
            id_token_signed_response_alg: self.id_token_signed_response_alg,
            password_grant_second_factor_users: self.password_grant_second_factor_users,
            token_exchange: self.token_exchange.as_ref().map(TokenExchangeConfig::settings),
            may_act: crate::config::may_act_party(self.may_act.as_ref()),
            dpop_bound_access_tokens: self.dpop_bound_access_tokens,
            backchannel_token_delivery_mode,
            backchannel_client_notification_endpoint: self.backchannel_client_notification_endpoint,
            allowed_origins: self.allowed_origins,
            auditor: self.auditor,
        })
    }
}

/// Refuses scopes the configuration does not declare: a client holding one could never be granted it,
/// and the first sign would be an `invalid_scope` at the token endpoint.
fn declared(app: &AppRef, scopes: &[String]) -> Result<(), AdminError> {
    let undeclared = app.policy().undeclared_scopes(scopes);
    if undeclared.is_empty() {
        return Ok(());
    }
    Err(AdminError(
        StatusCode::BAD_REQUEST,
        crate::issuance::undeclared_message(&undeclared),
    ))
}

/// `POST /admin/clients`: registers a client; a generated secret is in this response only.
pub async fn create(
    State(app): State<AppRef>,
    headers: HeaderMap,
    body: Result<Json<ClientRequest>, JsonRejection>,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    // The token is checked before the body is read: a caller without it learns nothing of the format.
    let Json(request) = match body {
        Ok(b) => b,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    declared(&app, &request.scopes)?;
    let existing: Option<Client> = store::get(app.store.as_ref(), &request.client_id).await?;
    let secret = if request.token_endpoint_auth_method.starts_with("client_secret") {
        Some(
            crate::ids::secret()
                .map_err(|_| AdminError(StatusCode::INTERNAL_SERVER_ERROR, "no randomness".into()))?,
        )
    } else {
        None
    };
    // The only secret is the one generated here.
    let spec = request.into_spec(secret.as_deref().map(clients::hash_secret))?;
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
    body: Result<Json<ClientRequest>, JsonRejection>,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    // The token is checked before the body is read: a caller without it learns nothing of the format.
    let Json(request) = match body {
        Ok(b) => b,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    if request.client_id != id {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "client_id in the body differs from the path".into(),
        ));
    }
    declared(&app, &request.scopes)?;
    let existing: Option<Client> = store::get(app.store.as_ref(), &id).await?;
    let spec = request.into_spec(existing.as_ref().and_then(|c| c.spec.secret_hash.clone()))?;
    app.store
        .append(clients::update(existing.as_ref(), spec, app.now())?)
        .await?;
    get(State(app), headers, Path(id))
        .await
        .map(IntoResponse::into_response)
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
    body: Result<Json<DisableInput>, JsonRejection>,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    // The token is checked before the body is read: a caller without it learns nothing of the format.
    let Json(input) = match body {
        Ok(b) => b,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let existing: Option<Client> = store::get(app.store.as_ref(), &id).await?;
    let reason = input
        .reason
        .unwrap_or_else(|| "disabled by an administrator".into());
    app.store
        .append(clients::disable(existing.as_ref(), &id, &reason, app.now())?)
        .await?;
    get(State(app), headers, Path(id))
        .await
        .map(IntoResponse::into_response)
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

//! `POST /token` (RFC 6749 §3.2), with DPoP (RFC 9449) for every grant.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use projections::event::UnixSeconds;

use super::client_auth::authenticate;
use super::dpop;
use super::login::{Peer, peer_of};
use crate::app::AppRef;
use crate::grants::{self, Binding, GrantType, TokenResponse};
use crate::oauth::OAuthError;
use crate::oauth::dpop::NONCE_HEADER;
use crate::oauth::form::Form;

/// Authenticates the client, checks its DPoP proof if it sent one, runs the grant with the tokens bound
/// to the proof's key, and answers with `Cache-Control: no-store` (and a `DPoP-Nonce` when the server
/// requires nonces, on errors too, so a client told `use_dpop_nonce` has one to retry with).
pub async fn token(State(app): State<AppRef>, peer: Peer, headers: HeaderMap, form: Form) -> Response {
    let now = app.now();
    let answer = match dpop::nonce_header(&app, now).await {
        Ok(nonce) => issue(&app, peer, &headers, &form, now)
            .await
            .map(|body| (body, nonce.clone()))
            .map_err(|e| (e, nonce)),
        Err(e) => Err((e, None)),
    };
    let grant = form.get("grant_type").and_then(|g| GrantType::parse(g).ok());
    let grant = grant.map_or("unsupported", GrantType::name);
    match &answer {
        Ok(_) => metrics::counter!("tokens_issued_total", "grant" => grant).increment(1),
        Err((e, _)) => {
            metrics::counter!("token_requests_refused_total", "grant" => grant, "error" => e.to_string())
                .increment(1)
        }
    }
    let (mut response, nonce) = match answer {
        Ok((body, nonce)) => {
            let mut response = Json(body).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
                .headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            (response, nonce)
        }
        Err((e, nonce)) => (e.into_response(), nonce),
    };
    if let Some(nonce) = nonce {
        response.headers_mut().insert(NONCE_HEADER, nonce);
    }
    response
}

async fn issue(
    app: &AppRef,
    peer: Peer,
    headers: &HeaderMap,
    form: &Form,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let grant = GrantType::parse(form.require("grant_type")?)?;
    // Before the client authenticates: a proof refused for want of a nonce must not use up a client
    // assertion the retry will present again.
    let proof = dpop::check(app, headers, "POST", &app.endpoints.token, None, now).await?;
    let client = authenticate(app, headers, form, &app.endpoints.token, now).await?;
    match &proof {
        Some(proof) => dpop::claim(app, proof, now).await?,
        None if client.spec.dpop_bound_access_tokens => {
            return Err(OAuthError::InvalidDpopProof(
                "this client must send a DPoP proof with every token request".into(),
            ));
        }
        None => {}
    }
    let binding = Binding {
        jkt: proof.map(|p| p.jkt),
        refresh_tokens: client.spec.token_endpoint_auth_method == "none",
    };
    grants::bound(
        binding,
        grants::dispatch(app, grant, &client, form, peer_of(peer), now),
    )
    .await
}

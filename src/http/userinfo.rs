//! `GET/POST /userinfo` (OpenID Connect Core §5.3): the signed-in user's claims, for an access token
//! that was granted `openid`. Errors follow RFC 6750 §3 for `Bearer` tokens and RFC 9449 §7.1 for
//! DPoP-bound ones.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use projections::event::UnixSeconds;
use projections::users::User;

use super::dpop;
use crate::access_tokens;
use crate::app::{App, AppRef};
use crate::oauth::OAuthError;
use crate::oauth::dpop::{NONCE_HEADER, SIGNING_ALGS};
use crate::oidc::{OPENID, user_claims};

/// The authorization scheme a token came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

/// Every challenge, whichever scheme failed: a client learns it may use either (RFC 9449 §7.1).
fn challenges(failed: Option<(Scheme, &str, &str)>) -> Vec<HeaderValue> {
    let algs = SIGNING_ALGS.join(" ");
    let error = |scheme: Scheme| match failed {
        Some((s, error, description)) if s == scheme => {
            format!(" error=\"{error}\", error_description=\"{description}\",")
        }
        _ => String::new(),
    };
    let bearer = format!("Bearer{}", error(Scheme::Bearer));
    let dpop = format!("DPoP{} algs=\"{algs}\"", error(Scheme::Dpop));
    [bearer.trim_end_matches(',').to_owned(), dpop]
        .iter()
        .filter_map(|v| HeaderValue::from_str(v).ok())
        .collect()
}

/// An error answer with the challenges naming it.
fn refusal(status: StatusCode, scheme: Scheme, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        Json(serde_json::json!({"error": error, "error_description": description})),
    )
        .into_response();
    for challenge in challenges(Some((scheme, error, description))) {
        r.headers_mut().append(header::WWW_AUTHENTICATE, challenge);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn inactive(scheme: Scheme) -> Response {
    refusal(
        StatusCode::UNAUTHORIZED,
        scheme,
        "invalid_token",
        "the access token is not active",
    )
}

/// Answers with the claims the token's scopes release (and a `DPoP-Nonce` when the server requires
/// nonces).
pub async fn userinfo(State(app): State<AppRef>, method: Method, headers: HeaderMap) -> Response {
    let now = app.now();
    let nonce = match dpop::nonce_header(&app, now).await {
        Ok(nonce) => nonce,
        Err(e) => return e.into_response(),
    };
    let mut r = answer(&app, &method, &headers, now).await;
    if let Some(nonce) = nonce {
        r.headers_mut().insert(NONCE_HEADER, nonce);
    }
    r
}

async fn answer(app: &App, method: &Method, headers: &HeaderMap, now: UnixSeconds) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .and_then(|(scheme, token)| {
            let token = token.trim();
            if scheme.eq_ignore_ascii_case("bearer") {
                Some((Scheme::Bearer, token))
            } else if scheme.eq_ignore_ascii_case("dpop") {
                Some((Scheme::Dpop, token))
            } else {
                None
            }
        });
    let Some((scheme, token)) = presented else {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        for challenge in challenges(None) {
            r.headers_mut().append(header::WWW_AUTHENTICATE, challenge);
        }
        return r;
    };
    let proof = match scheme {
        Scheme::Bearer => None,
        Scheme::Dpop => {
            match dpop::check(
                app,
                headers,
                method.as_str(),
                &app.endpoints.userinfo,
                Some(token),
                now,
            )
            .await
            {
                Ok(Some(proof)) => Some(proof),
                Ok(None) => {
                    return refusal(
                        StatusCode::UNAUTHORIZED,
                        Scheme::Dpop,
                        "invalid_dpop_proof",
                        "the DPoP scheme needs a DPoP proof",
                    );
                }
                Err(e @ (OAuthError::InvalidDpopProof(_) | OAuthError::UseDpopNonce(_))) => {
                    let description = e.description().unwrap_or_default().to_owned();
                    return refusal(
                        StatusCode::UNAUTHORIZED,
                        Scheme::Dpop,
                        &e.to_string(),
                        &description,
                    );
                }
                Err(e) => return e.into_response(),
            }
        }
    };
    let found = match access_tokens::find(app.store.as_ref(), &app.config.issuer, token, now).await {
        Ok(Some(f)) if f.active => f,
        Ok(_) => return inactive(scheme),
        Err(e) => return OAuthError::from(e).into_response(),
    };
    // A bound token is accepted only with a proof by its key (RFC 9449 §7.1); a Bearer token is not
    // made DPoP by its scheme.
    match (&found.token.dpop_jkt, &proof) {
        (None, None) => {}
        (Some(bound), Some(proof)) if *bound == proof.jkt => match dpop::claim(app, proof, now).await {
            Ok(()) => {}
            Err(e @ OAuthError::InvalidDpopProof(_)) => {
                let description = e.description().unwrap_or_default().to_owned();
                return refusal(
                    StatusCode::UNAUTHORIZED,
                    Scheme::Dpop,
                    "invalid_dpop_proof",
                    &description,
                );
            }
            Err(e) => return e.into_response(),
        },
        (Some(_), None) => {
            return refusal(
                StatusCode::UNAUTHORIZED,
                Scheme::Bearer,
                "invalid_token",
                "the access token is bound to a DPoP key; present it with the DPoP scheme and a proof",
            );
        }
        (_, Some(_)) => {
            return refusal(
                StatusCode::UNAUTHORIZED,
                Scheme::Dpop,
                "invalid_token",
                "the DPoP proof's key is not the one the access token is bound to",
            );
        }
    }
    if !found.token.scopes.iter().any(|s| s == OPENID) {
        return refusal(
            StatusCode::FORBIDDEN,
            scheme,
            "insufficient_scope",
            "the token was not granted openid",
        );
    }
    let user = crate::users::by_subject(app.store.as_ref(), &found.token.subject).await;
    match user.map(|u| u.filter(User::is_enabled)) {
        Ok(Some(user)) => {
            let mut r = Json(user_claims(&user, &found.token.scopes)).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Ok(None) => inactive(scheme),
        Err(e) => OAuthError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_name_the_error_under_the_scheme_that_failed() {
        let plain: Vec<_> = challenges(None)
            .into_iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(plain[0], "Bearer");
        assert!(plain[1].starts_with("DPoP algs=\"ES256 "), "{}", plain[1]);
        let failed: Vec<_> = challenges(Some((Scheme::Dpop, "invalid_dpop_proof", "bad")))
            .into_iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(failed[0], "Bearer");
        assert!(
            failed[1].starts_with("DPoP error=\"invalid_dpop_proof\", error_description=\"bad\", algs="),
            "{}",
            failed[1]
        );
        let bearer: Vec<_> = challenges(Some((Scheme::Bearer, "invalid_token", "gone")))
            .into_iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            bearer[0],
            "Bearer error=\"invalid_token\", error_description=\"gone\""
        );
    }
}

//! Strict `application/x-www-form-urlencoded` bodies (RFC 6749 §3.2): one value per parameter.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;

use super::OAuthError;

/// Hard cap on a form body; the configured limit may only be lower.
pub const FORM_BYTES_MAX: usize = 64 * 1024;
/// Most parameters one form may carry.
pub const FORM_PARAMS_MAX: usize = 64;

/// The body limit in force for a request (the configured one, at most [`FORM_BYTES_MAX`]); the router
/// puts it in the request's extensions so a refusal names the limit that refused.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A parsed form. Empty values count as absent, as RFC 6749 §3.1 says.
#[derive(Debug, Clone, Default)]
pub struct Form(pub BTreeMap<String, String>);

impl Form {
    /// Parses a body, refusing repeated parameters.
    pub fn parse(body: &[u8]) -> Result<Form, OAuthError> {
        let mut map = BTreeMap::new();
        for (i, (k, v)) in form_urlencoded::parse(body).enumerate() {
            if i >= FORM_PARAMS_MAX {
                return Err(OAuthError::InvalidRequest(format!(
                    "more than {FORM_PARAMS_MAX} parameters"
                )));
            }
            if v.is_empty() {
                continue;
            }
            if map.insert(k.clone().into_owned(), v.into_owned()).is_some() {
                return Err(OAuthError::InvalidRequest(format!(
                    "parameter {k} is given more than once"
                )));
            }
        }
        Ok(Form(map))
    }

    /// A parameter's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A parameter that must be present.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::InvalidRequest(format!("missing parameter {name}")))
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(OAuthError::InvalidRequest(
                "the body must be application/x-www-form-urlencoded".into(),
            ));
        }
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(FORM_BYTES_MAX, |l| l.0);
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                OAuthError::InvalidRequest(format!("the body is over the {limit}-byte limit"))
            } else {
                OAuthError::InvalidRequest("the body could not be read".into())
            }
        })?;
        Form::parse(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused_and_empty_ones_ignored() {
        assert!(matches!(
            Form::parse(b"a=1&a=2"),
            Err(OAuthError::InvalidRequest(_))
        ));
        let f = Form::parse(b"a=1&b=&c=x%20y").unwrap();
        assert_eq!(
            (f.get("a"), f.get("b"), f.get("c")),
            (Some("1"), None, Some("x y"))
        );
        assert!(Form::parse(b"a=&a=2").is_ok());
    }
}

//! `X-Request-Id`: one id per request, the caller's when it is safe to repeat, a fresh one otherwise. It
//! is returned on the response, carried by every log line of the request (a `request` span), and recorded
//! in the metadata of every event the request appends, so a support ticket, a log search and an audit
//! of the ledger meet on one value.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header, as load balancers and proxies name it.
pub const HEADER: &str = "x-request-id";

/// The longest id taken from a caller.
const LEN_MAX: usize = 128;

/// The caller's id when it is one: 1 to 128 characters of letters, digits and `-._:/+=`. Anything else
/// (spaces, control characters, quotes, a megabyte) is not repeated into logs or the ledger. Pure.
pub fn accept(given: Option<&HeaderValue>) -> Option<String> {
    let id = given?.to_str().ok()?;
    let safe = |c: char| c.is_ascii_alphanumeric() || "-._:/+=".contains(c);
    (!id.is_empty() && id.len() <= LEN_MAX && id.chars().all(safe)).then(|| id.to_owned())
}

/// Gives the request its id, runs it inside the id's span and task-local, and answers with the id.
pub async fn layer(request: Request, next: Next) -> Response {
    let id = accept(request.headers().get(HEADER)).unwrap_or_else(crate::ids::id);
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = %request.method(),
        path = %request.uri().path()
    );
    let mut response =
        crate::telemetry::in_request(id.clone(), next.run(request).instrument(span.clone())).await;
    // An access log for who asks for one (RUST_LOG=consent_ledger=debug): off by default, as a line per
    // token would cost more than the token.
    tracing::debug!(parent: &span, status = response.status().as_u16(), "answered");
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(value: &str) -> Option<String> {
        accept(Some(&HeaderValue::from_str(value).unwrap()))
    }

    #[test]
    fn a_callers_id_is_kept_only_when_it_is_safe_to_repeat() {
        assert_eq!(given("req-42.a:b/c+d=e_f"), Some("req-42.a:b/c+d=e_f".into()));
        assert_eq!(given(&"a".repeat(128)), Some("a".repeat(128)));
        assert_eq!(given(&"a".repeat(129)), None, "too long");
        assert_eq!(given("two words"), None, "a space");
        assert_eq!(given("\"quoted\""), None);
        assert_eq!(given("a\tb"), None, "a control character");
        assert_eq!(given(""), None);
        assert_eq!(accept(None), None);
        assert_eq!(
            accept(Some(&HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap())),
            None,
            "not ASCII"
        );
    }
}

//! CSRF protection for every form: a double-submit token.
//!
//! Each page with a form sets an `HttpOnly`, `SameSite=Lax` cookie holding a random token and repeats the
//! token in a hidden field; a POST is accepted only when the two match. Another site can make a browser
//! send the cookie but can neither read it nor set it, so it cannot fill in the field.

use axum::http::{HeaderMap, HeaderValue};

use crate::app::App;
use crate::oauth::client_auth::constant_time_eq;
use crate::sessions::{cookie, random_token, set_cookie};
use crate::store::StoreError;

/// The CSRF cookie's name.
pub const CSRF_COOKIE: &str = "cl_csrf";
/// The hidden form field's name.
pub const CSRF_FIELD: &str = "csrf";

/// The token to put in a form, and the cookie to set when the browser has none yet.
pub fn token(app: &App, headers: &HeaderMap) -> Result<(String, Option<HeaderValue>), StoreError> {
    match cookie(headers, CSRF_COOKIE) {
        Some(t) if t.len() >= 43 => Ok((t.to_owned(), None)),
        _ => {
            let t = random_token()?;
            let set = set_cookie(app, CSRF_COOKIE, &t, 24 * 3600);
            Ok((t, set))
        }
    }
}

/// Whether a submitted form's token matches the browser's cookie.
pub fn check(headers: &HeaderMap, submitted: Option<&str>) -> bool {
    match (cookie(headers, CSRF_COOKIE), submitted) {
        (Some(c), Some(s)) => c.len() >= 43 && constant_time_eq(c.as_bytes(), s.as_bytes()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    #[test]
    fn a_form_passes_only_with_the_cookie_token() {
        let t = "a".repeat(43);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("cl_csrf={t}")).unwrap(),
        );
        assert!(check(&h, Some(&t)));
        assert!(!check(&h, Some(&"b".repeat(43))));
        assert!(!check(&h, None));
        assert!(!check(&HeaderMap::new(), Some(&t)));
    }
}

//! Answering the client at its redirect URI: query, fragment or form post, always with `iss` (RFC 9207).

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::request::{ResponseMode, Target};
use crate::oauth::OAuthError;

/// The parameters of a successful or failed authorization response, `state` and `iss` included.
pub fn parameters(
    target: &Target,
    issuer: &str,
    mut params: Vec<(&'static str, String)>,
) -> Vec<(&'static str, String)> {
    if let Some(state) = &target.state {
        params.push(("state", state.clone()));
    }
    params.push(("iss", issuer.to_owned()));
    params
}

/// The error parameters for `error`.
pub fn error_parameters(error: &OAuthError) -> Vec<(&'static str, String)> {
    let mut p = vec![("error", error.to_string())];
    if let Some(d) = error.description() {
        p.push(("error_description", d.to_owned()));
    }
    p
}

/// The redirect URI with `params` added in the query or the fragment.
pub fn redirect_url(target: &Target, params: &[(&str, String)]) -> String {
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let uri = &target.redirect_uri;
    match target.mode {
        ResponseMode::Fragment => format!("{uri}#{encoded}"),
        _ if uri.contains('?') => format!("{uri}&{encoded}"),
        _ => format!("{uri}?{encoded}"),
    }
}

/// The page that posts the response to the client (OAuth 2.0 Form Post Response Mode).
#[derive(Template)]
#[template(path = "form_post.html")]
struct FormPost<'a> {
    action: &'a str,
    fields: &'a [(&'static str, String)],
    nonce: &'a str,
}

/// Sends `params` to the client the way `target` asks.
pub fn send(target: &Target, params: Vec<(&'static str, String)>) -> Response {
    match target.mode {
        ResponseMode::Query | ResponseMode::Fragment => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&redirect_url(target, &params)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        ResponseMode::FormPost => {
            // The one script any page runs: submitting this form. A fresh nonce allows exactly it.
            let nonce = crate::ids::id();
            let page = FormPost {
                action: &target.redirect_uri,
                fields: &params,
                nonce: &nonce,
            };
            let origin = origin(&target.redirect_uri);
            let csp = format!(
                "default-src 'none'; script-src 'nonce-{nonce}'; form-action {origin}; \
                 frame-ancestors 'none'; base-uri 'none'"
            );
            match page.render() {
                Ok(html) => crate::pages::with_page_headers(axum::response::Html(html).into_response(), &csp),
                Err(e) => {
                    tracing::error!(error = %e, "rendering form_post");
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            }
        }
    }
}

/// `scheme://host[:port]` of a URL, for a CSP source; the whole URL when it has no path.
pub fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find(['/', '?', '#']) {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str, mode: ResponseMode) -> Target {
        Target {
            redirect_uri: uri.into(),
            mode,
            state: Some("s t".into()),
        }
    }

    #[test]
    fn parameters_go_in_the_query_or_the_fragment() {
        let t = target("https://app.example/cb?x=1", ResponseMode::Query);
        let p = parameters(&t, "https://as.example", vec![("code", "abc".into())]);
        assert_eq!(
            redirect_url(&t, &p),
            "https://app.example/cb?x=1&code=abc&state=s+t&iss=https%3A%2F%2Fas.example"
        );
        let t = target("https://app.example/cb", ResponseMode::Fragment);
        assert_eq!(
            redirect_url(&t, &[("access_token", "t".into())]),
            "https://app.example/cb#access_token=t"
        );
    }

    #[test]
    fn the_form_post_csp_allows_only_the_client_origin() {
        assert_eq!(
            origin("https://app.example:8443/cb?x"),
            "https://app.example:8443"
        );
        assert_eq!(origin("http://127.0.0.1:9/cb"), "http://127.0.0.1:9");
    }
}

//! Server-rendered pages: the templates' data, and the headers every page carries.
//!
//! Templates live in `templates/` and are compiled into the binary (askama), so a typo in a template is a
//! build error and the server needs no files at run time. Every value is HTML-escaped by the template.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The stylesheet, served at `/static/style.css` from the binary.
pub const STYLESHEET: &str = include_str!("../../static/style.css");

/// Content-Security-Policy of every page: nothing but this server's own stylesheet; no scripts, no
/// frames. `form-action` is left to the pages that can name every destination: browsers apply it to the
/// redirects that follow a form too, and a sign-in form ends at whichever client is waiting.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
                   base-uri 'none'";

/// Renders `page` with `status` and the headers every page carries (no caching, no framing, strict CSP).
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    render_with_csp(status, page, CSP)
}

/// The page CSP with `form-action` limited to this server and `also` (the origin a form's answer
/// redirects to).
pub fn csp_with_form_action(also: &str) -> String {
    format!("{CSP}; form-action 'self' {also}")
}

/// Renders `page` with the page headers and the given Content-Security-Policy.
pub fn render_with_csp(status: StatusCode, page: &impl Template, csp: &str) -> Response {
    match page.render() {
        Ok(html) => with_page_headers((status, axum::response::Html(html)).into_response(), csp),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// Adds the page headers with the given Content-Security-Policy.
pub fn with_page_headers(mut response: Response, csp: &str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(v) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

/// A page that only says what went wrong.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    /// The OAuth error code, for whoever reports the problem.
    pub code: &'a str,
}

/// An error page response.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    render(
        status,
        &ErrorPage {
            title: "This request cannot continue",
            message,
            code,
        },
    )
}

/// `GET /static/style.css`.
pub async fn stylesheet() -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLESHEET).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

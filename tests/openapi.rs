//! `/openapi.json` against the running router: the document names exactly the methods each path
//! answers. (scripts/schemathesis checks the rest of the document against a live server.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::{TOKEN_CONFIG, TestDb, TestServer};

/// The methods an `Allow` header lists, upper case, without `HEAD` (which axum answers for every `GET`).
fn allowed(r: &reqwest::Response) -> BTreeSet<String> {
    let header = r
        .headers()
        .get("allow")
        .unwrap_or_else(|| panic!("{} without Allow", r.url()))
        .to_str()
        .unwrap();
    header
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty() && m != "HEAD")
        .collect()
}

async fn every_documented_path_allows_exactly_the_documented_methods(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let doc = s.get_json("/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    for (path, operations) in paths {
        let documented: BTreeSet<String> = operations
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
            .map(|k| k.to_ascii_uppercase())
            .collect();
        let url = format!("{}{}", s.base, path.replace("{id}", "x"));
        // An undocumented method is refused with 405 and an `Allow` naming what the path does answer
        // (RFC 9110 §15.5.6), so a client's OPTIONS or DELETE learns the documented methods.
        for method in ["OPTIONS", "DELETE", "PATCH"] {
            if documented.contains(method) {
                continue;
            }
            let r = s
                .http
                .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 405, "{method} {path}");
            assert_eq!(allowed(&r), documented, "{method} {path}: Allow vs the document");
        }
    }
}

on_both_stores!(every_documented_path_allows_exactly_the_documented_methods);

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

/// Every `enum` value under a schema, following `$ref`s, `oneOf` and properties named `grant_type`.
fn grant_type_values(doc: &serde_json::Value, schema: &serde_json::Value, out: &mut BTreeSet<String>) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return grant_type_values(doc, &doc["components"]["schemas"][name], out);
    }
    for variant in schema["oneOf"].as_array().into_iter().flatten() {
        grant_type_values(doc, variant, out);
    }
    let grant = &schema["properties"]["grant_type"];
    if !grant.is_null() {
        let target = match grant["$ref"].as_str() {
            Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
            None => grant,
        };
        for v in target["enum"].as_array().into_iter().flatten() {
            out.insert(v.as_str().unwrap().to_owned());
        }
    }
}

async fn the_token_form_documents_every_supported_grant_type(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let doc = s.get_json("/openapi.json").await;
    let mut documented = BTreeSet::new();
    grant_type_values(&doc, &doc["components"]["schemas"]["TokenForm"], &mut documented);
    // Implicit tokens come from the authorization endpoint, never from /token
    let supported: BTreeSet<String> = consent_ledger::config::SUPPORTED_GRANT_TYPES
        .iter()
        .filter(|g| **g != "implicit")
        .map(|g| (*g).to_owned())
        .collect();
    assert_eq!(documented, supported);
    // And a client may be registered for each of them
    let registrable: BTreeSet<String> = doc["components"]["schemas"]["GrantTypeSchema"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let all: BTreeSet<String> = consent_ledger::config::SUPPORTED_GRANT_TYPES
        .iter()
        .map(|g| (*g).to_owned())
        .collect();
    assert_eq!(registrable, all);
}

on_both_stores!(the_token_form_documents_every_supported_grant_type);

//! Authorization flows over HTTP: authorize, consent, code exchange.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! consent-ledger: an OAuth 2.0 authorization server that decides at token issuance and records every
//! delegation, consent and issuance as an event in a tamper-evident ledger.

pub mod access_tokens;
pub mod app;
pub mod audit;
pub mod authorize;
pub mod bench;
pub mod ciba;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod delegations;
pub mod device;
pub mod grants;
pub mod http;
pub mod ids;
pub mod issuance;
pub mod keys;
pub mod oauth;
pub mod oidc;
pub mod pages;
pub mod policy;
pub mod relay;
pub mod sessions;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod trust;
pub mod users;

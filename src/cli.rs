//! The command line: parse, run one command, turn its outcome into an exit code.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::audit::replay::{self, Until};
use crate::audit::verify::{self, Anchor, Verdict};
use crate::store::{self, EventStore};

/// The default ledger: a SQLite file beside the working directory.
pub const DEFAULT_DATABASE: &str = "sqlite://./data/consent-ledger.db";

/// consent-ledger: an OAuth 2.0 authorization server with a tamper-evident ledger.
#[derive(Debug, Parser)]
#[command(name = "consent-ledger", version)]
pub struct Cli {
    /// Database URL: sqlite://PATH (default ./data/consent-ledger.db) or postgres://…
    #[arg(long, global = true, env = "DATABASE_URL")]
    pub database: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Check and replay the ledger.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Measure the server on this machine.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

/// Auditor commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; exit 0 only when it is intact.
    Verify {
        /// A POSITION:HASH recorded earlier that the chain must still contain.
        #[arg(long)]
        anchor: Option<Anchor>,
    },
    /// Fold the log into fresh state: compare with the stored rows, or print the state as of --until.
    Replay {
        /// A position, or an RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
    },
}

/// A command failed in a way the user should read.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn parse_until(text: &str) -> Result<Until, CliError> {
    if let Ok(p) = text.parse::<u64>() {
        return Ok(Until::Position(p));
    }
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|_| {
            CliError::Usage(format!(
                "--until {text:?} is neither a position nor an RFC 3339 time"
            ))
        })?;
    Ok(Until::Time((t.unix_timestamp_nanos() / 1_000) as i64))
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let url = cli.database.unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    match cli.command {
        Command::Bench(cmd) => return crate::bench::run(cmd, &url).await,
        Command::Audit(AuditCommand::Replay { until: Some(u) }) => {
            // Parse before opening so a typo does not touch the database.
            let until = parse_until(&u)?;
            let store = store::open(&url).await?;
            let (state, last) = replay::fold(store.as_ref(), until).await?;
            let out = serde_json::json!({ "position": last, "state": state });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            store.close().await;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let store = store::open(&url).await?;
    let code = match cli.command {
        Command::Serve { bind } => serve(store.clone(), bind).await?,
        Command::Migrate => {
            println!("database migrated: {}", redact(&url));
            ExitCode::SUCCESS
        }
        Command::Audit(AuditCommand::Verify { anchor }) => {
            match verify::verify(store.as_ref(), anchor.as_ref()).await? {
                Verdict::Intact { count, head_hash } => {
                    println!("intact: {count} events, head {head_hash}");
                    ExitCode::SUCCESS
                }
                Verdict::Broken { position, reason } => {
                    println!("broken at position {position}: {reason}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Audit(AuditCommand::Replay { .. }) => {
            let diffs = replay::compare(store.as_ref()).await?;
            if diffs.is_empty() {
                println!("replay matches the stored projections");
                ExitCode::SUCCESS
            } else {
                for d in &diffs {
                    println!("{d}");
                }
                println!(
                    "{} difference(s) between the replay and the stored projections",
                    diffs.len()
                );
                ExitCode::FAILURE
            }
        }
        Command::Bench(_) => ExitCode::SUCCESS,
    };
    store.close().await;
    Ok(code)
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn serve(store: Arc<dyn EventStore>, bind: SocketAddr) -> Result<ExitCode, CliError> {
    let app = crate::http::router(crate::http::AppState { store });
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| CliError::Usage(format!("cannot listen on {bind}: {e}")))?;
    tracing::info!(%bind, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("stopped accepting requests; flushing the ledger writer");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_takes_a_position_or_an_rfc3339_time() {
        assert_eq!(parse_until("42").unwrap(), Until::Position(42));
        assert_eq!(
            parse_until("1970-01-01T00:00:01Z").unwrap(),
            Until::Time(1_000_000)
        );
        assert!(parse_until("yesterday").is_err());
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://./x.db"), "sqlite://./x.db");
    }
}

//! Benchmarks a single command runs on this machine; figures, not pass/fail.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use projections::Event;
use projections::event::{TokenIssued, TokenKind, V1};

use crate::cli::CliError;
use crate::store::{self, AppendRequest, EventStore, ExpectedVersion};

/// Benchmark commands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Concurrent single-event appends to distinct streams, durable; prints events/s and latency.
    Append {
        /// Appends in all.
        #[arg(long, default_value_t = 50_000)]
        count: u64,
        /// Tasks appending at once.
        #[arg(long, default_value_t = 64)]
        concurrency: u64,
        /// Print `ack STREAM POSITION` for every acknowledged append (used by the crash test).
        #[arg(long)]
        acks: bool,
    },
}

/// Runs a benchmark against the database at `url`.
pub async fn run(cmd: BenchCommand, url: &str) -> Result<ExitCode, CliError> {
    match cmd {
        BenchCommand::Append {
            count,
            concurrency,
            acks,
        } => {
            let store = store::open(url).await?;
            let report = append(store.clone(), count, concurrency.max(1), acks).await?;
            store.close().await;
            if !acks {
                println!("{} {report}", crate::cli::redact(url));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Throughput and latency of one run.
#[derive(Debug, Clone)]
pub struct Report {
    pub count: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} appends in {:.2}s: {:.0} events/s, p50 {:.2} ms, p99 {:.2} ms",
            self.count,
            self.elapsed.as_secs_f64(),
            self.count as f64 / self.elapsed.as_secs_f64(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        )
    }
}

fn token_event(jti: &str, now: i64) -> Event {
    Event::TokenIssued(TokenIssued {
        v: V1,
        jti: jti.to_owned(),
        kind: TokenKind::Access,
        client_id: "bench-client".into(),
        subject: "bench-client".into(),
        delegation_id: None,
        scopes: vec!["messages:read".into()],
        audience: vec!["https://api.example".into()],
        kid: "bench-key".into(),
        grant_type: "client_credentials".into(),
        issued_at: now,
        expires_at: now + 300,
        decision_trail: serde_json::json!({"scopes": [{"scope": "messages:read", "outcome": "issued"}]}),
        policy_version: None,
    })
}

/// Percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn append(
    store: Arc<dyn EventStore>,
    count: u64,
    concurrency: u64,
    acks: bool,
) -> Result<Report, CliError> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let store = store.clone();
        let run = run.clone();
        let share = count / concurrency + u64::from(t < count % concurrency);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share as usize);
            for i in 0..share {
                let jti = format!("{run}-{t}-{i}");
                let stream = format!("token-{jti}");
                let request = AppendRequest::to_stream(
                    &stream,
                    ExpectedVersion::NoStream,
                    vec![token_event(&jti, now)],
                );
                let began = Instant::now();
                let result = store.append(request).await;
                latencies.push(began.elapsed());
                match result {
                    Ok(r) if acks => {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ack {stream} {}", r.first_position);
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(latencies)
        }));
    }
    let mut all = Vec::with_capacity(count as usize);
    for t in tasks {
        let latencies = t
            .await
            .map_err(|e| CliError::Usage(format!("benchmark task failed: {e}")))?
            .map_err(|e| CliError::Usage(format!("append failed: {e}")))?;
        all.extend(latencies);
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    Ok(Report {
        count,
        elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    })
}

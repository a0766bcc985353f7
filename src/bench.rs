//! Benchmarks a single command runs on this machine; figures, not pass/fail.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use projections::Event;
use projections::event::{TokenIssued, TokenKind, V1};

use crate::cli::CliError;
use crate::clock::Clock;
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
    /// Decision time per token: 10 requested scopes, 3 authorizers each (built-in, then with one Rego).
    Policy {
        /// Decisions per variant.
        #[arg(long, default_value_t = 20_000)]
        decisions: u64,
    },
    /// `client_credentials` over HTTP against an in-process server at several concurrencies.
    Tokens {
        /// Token requests per concurrency level.
        #[arg(long, default_value_t = 20_000)]
        requests: u64,
        /// Concurrency levels, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        concurrency: Vec<u64>,
    },
    /// Every grant a machine can drive, side by side in one run at one concurrency: `client_credentials`,
    /// then each other grant as a ratio of it (token exchange of an access token, JWT bearer assertions of
    /// a trusted issuer).
    Grants {
        /// Token requests per grant.
        #[arg(long, default_value_t = 20_000)]
        requests: u64,
        /// Workers at once.
        #[arg(long, default_value_t = 64)]
        concurrency: u64,
    },
    /// Whether cost grows with history: adds `--events` events to this ledger, then measures append and
    /// `client_credentials` throughput on it and on a fresh ledger beside it (a file next to it, or a
    /// schema in the same PostgreSQL database), round by round in turn; prints both and their ratio.
    History {
        /// Events to add between the two measurements.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Single-event appends per measurement.
        #[arg(long, default_value_t = 20_000)]
        appends: u64,
        /// Token requests per measurement.
        #[arg(long, default_value_t = 20_000)]
        requests: u64,
        /// Appending tasks and token workers at once.
        #[arg(long, default_value_t = 64)]
        concurrency: u64,
        /// Runs per measurement; the best counts, so a neighbour's burst of load does not.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// What auditors wait for: adds `--events` token events to this ledger (none with 0), then times
    /// `audit verify` and `audit replay` on it and reads each one's peak memory (VmHWM).
    Audit {
        /// Events to add before measuring.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
    },
    /// `refresh_token` over HTTP: each worker rotates its own delegation's refresh token, request after
    /// request, against an in-process server at several concurrencies.
    Refresh {
        /// Refreshes per concurrency level.
        #[arg(long, default_value_t = 20_000)]
        requests: u64,
        /// Concurrency levels, comma-separated (one delegation per worker).
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        concurrency: Vec<u64>,
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
        BenchCommand::Policy { decisions } => {
            for (label, rego) in [
                ("built-in authorizers", false),
                ("with one rego authorizer per scope", true),
            ] {
                let per = policy_decisions(decisions.max(1), rego)?;
                println!(
                    "policy, 10 scopes x 3 {label}: {:.1} µs per token decision",
                    per.as_secs_f64() * 1e6
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Tokens {
            requests,
            concurrency,
        } => {
            let store = store::open(url).await?;
            let reports = tokens(store.clone(), requests, &concurrency).await?;
            for (c, report) in concurrency.iter().zip(reports) {
                println!(
                    "{} client_credentials concurrency {c}: {}",
                    crate::cli::redact(url),
                    report.as_tokens()
                );
            }
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::History {
            events,
            appends,
            requests,
            concurrency,
            rounds,
        } => {
            let store = store::open(url).await?;
            let sizes = Sizes {
                appends,
                requests,
                concurrency: concurrency.max(1),
                rounds: rounds.max(1),
            };
            let result = history(store.clone(), url, events, sizes).await;
            store.close().await;
            for line in result? {
                println!("{} {line}", crate::cli::redact(url));
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Grants {
            requests,
            concurrency,
        } => {
            let store = store::open(url).await?;
            let result = grants(store.clone(), requests, concurrency.max(1)).await;
            store.close().await;
            for line in result? {
                println!("{} {line}", crate::cli::redact(url));
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Audit { events } => {
            let store = store::open(url).await?;
            let result = audit(&store, events).await;
            store.close().await;
            for line in result? {
                println!("{} {line}", crate::cli::redact(url));
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Refresh {
            requests,
            concurrency,
        } => {
            let store = store::open(url).await?;
            let reports = refreshes(store.clone(), requests, &concurrency).await?;
            for (c, report) in concurrency.iter().zip(reports) {
                println!(
                    "{} refresh_token concurrency {c}: {}",
                    crate::cli::redact(url),
                    report.as_tokens()
                );
            }
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

impl Report {
    fn as_tokens(&self) -> String {
        self.line("tokens", "tokens/s")
    }

    fn line(&self, what: &str, rate: &str) -> String {
        format!(
            "{} {what} in {:.2}s: {:.0} {rate}, p50 {:.2} ms, p99 {:.2} ms",
            self.count,
            self.elapsed.as_secs_f64(),
            self.count as f64 / self.elapsed.as_secs_f64(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        )
    }
}

/// The real router served on a loopback port, with one registered benchmark client.
struct BenchServer {
    app: Arc<crate::app::App>,
    base: String,
    client_id: String,
    secret: String,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    keys: std::path::PathBuf,
}

impl BenchServer {
    /// Registers a client that may use `grant_types` and serves the router.
    async fn start(store: Arc<dyn EventStore>, grant_types: &[&str]) -> Result<BenchServer, CliError> {
        Self::start_with(store, grant_types, |_, _| {}).await
    }

    /// [`BenchServer::start`], with the configuration and the client's registration adjusted by `adjust`.
    async fn start_with(
        store: Arc<dyn EventStore>,
        grant_types: &[&str],
        adjust: impl FnOnce(&mut crate::config::Config, &mut projections::event::ClientSpec),
    ) -> Result<BenchServer, CliError> {
        use crate::config::{Config, ScopeConfig};
        let keys = std::env::temp_dir().join(format!("consent-ledger-bench-keys-{}", crate::ids::id()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut config = Config {
            issuer: base.clone(),
            key_dir: keys.clone(),
            scopes: vec![ScopeConfig {
                name: "messages:read".into(),
                description: String::new(),
                default: true,
                lifetime_seconds: None,
                consent_lifetime_seconds: None,
                authorizers: vec![],
            }],
            ..Config::default()
        };
        let client_id = format!("bench-{}", crate::ids::id());
        let secret = crate::ids::secret().map_err(|_| CliError::Usage("no randomness".into()))?;
        let spec = machine_client(&client_id, vec!["messages:read".into()], serde_json::Value::Null);
        let mut spec = projections::event::ClientSpec {
            secret_hash: Some(crate::clients::hash_secret(&secret)),
            grant_types: grant_types.iter().map(|g| (*g).to_owned()).collect(),
            ..spec
        };
        adjust(&mut config, &mut spec);
        let now = store.clock().now();
        store.append(crate::clients::register(None, spec, now)?).await?;
        let app = Arc::new(crate::app::App::new(store, config)?);
        app.publish_policy(&app.policy(), now)
            .await
            .map_err(|e| CliError::Usage(e.to_string()))?;
        app.record_trusted_issuers(now).await?;
        // A fresh key whose private half is in this run's directory, whatever an earlier run left.
        app.keys.rotate(app.store.as_ref(), now).await?;
        let router = crate::http::router(app.clone());
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(BenchServer {
            app,
            base,
            client_id,
            secret,
            server,
            keys,
        })
    }

    fn stop(self) {
        self.server.abort();
        let _ = std::fs::remove_dir_all(self.keys);
    }
}

/// Drives the `refresh_token` grant: per worker, one delegation and its first refresh token recorded
/// directly in the store, then a chain of refreshes over HTTP, each presenting the token the last one
/// returned.
async fn refreshes(store: Arc<dyn EventStore>, count: u64, levels: &[u64]) -> Result<Vec<Report>, CliError> {
    let bench = BenchServer::start(store, &["refresh_token"]).await?;
    let mut reports = Vec::new();
    for &concurrency in levels {
        let concurrency = concurrency.max(1);
        let mut first = Vec::new();
        for _ in 0..concurrency {
            first.push(seed_delegation(&bench).await?);
        }
        reports.push(refresh_load(&bench, first, count).await?);
    }
    bench.stop();
    Ok(reports)
}

/// Records a delegation of `messages:read` to the benchmark client and mints its first refresh token.
async fn seed_delegation(bench: &BenchServer) -> Result<String, CliError> {
    use projections::event::{AuthContext, DelegationCreated, GrantedScope};
    let id = crate::ids::id();
    let subject = format!("bench-user-{id}");
    let now = bench.app.now();
    let created = Event::DelegationCreated(DelegationCreated {
        v: V1,
        delegation_id: id.clone(),
        subject: subject.clone(),
        client_id: bench.client_id.clone(),
        scopes: vec![GrantedScope {
            scope: "messages:read".into(),
            expires_at: None,
        }],
        authorization_details: serde_json::Value::Null,
        claims: serde_json::Value::Null,
        auth: AuthContext::default(),
        grant_type: "authorization_code".into(),
        at: now,
        audience: vec![],
    });
    let (value, minted) = crate::grants::refresh::mint(crate::grants::refresh::Minting {
        delegation_id: &id,
        client_id: &bench.client_id,
        subject: &subject,
        scopes: vec!["messages:read".into()],
        now,
        lifetime_seconds: bench.app.config.tokens.refresh_token_seconds,
        parent_hash: None,
    })
    .map_err(|e| CliError::Usage(format!("minting a refresh token: {e}")))?;
    let request = AppendRequest::to_stream(
        crate::delegations::stream(&id),
        ExpectedVersion::NoStream,
        vec![created],
    )
    .and(minted);
    bench.app.store.append(request).await?;
    Ok(value)
}

async fn refresh_load(bench: &BenchServer, first: Vec<String>, count: u64) -> Result<Report, CliError> {
    let concurrency = first.len() as u64;
    let http = load_client(concurrency)?;
    let url = format!("{}/token", bench.base);
    let started = stopwatch();
    let mut tasks = Vec::new();
    for (t, mut token) in (0..concurrency).zip(first) {
        let (http, url, client_id, secret) = (
            http.clone(),
            url.clone(),
            bench.client_id.clone(),
            bench.secret.clone(),
        );
        let share = share_of(count, concurrency, t);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share as usize);
            for _ in 0..share {
                let began = stopwatch();
                let r = http
                    .post(&url)
                    .basic_auth(&client_id, Some(&secret))
                    .form(&[("grant_type", "refresh_token"), ("refresh_token", token.as_str())])
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = r.status();
                let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
                latencies.push(began.elapsed());
                match body["refresh_token"].as_str() {
                    Some(next) if status.is_success() => token = next.to_owned(),
                    _ => return Err(format!("a refresh failed: {status} {body}")),
                }
            }
            Ok(latencies)
        }));
    }
    report(count, started, tasks).await
}

/// How much one measurement of `bench history` does.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    appends: u64,
    requests: u64,
    concurrency: u64,
    rounds: u32,
}

/// One run of appends, then one of tokens.
async fn measure(store: &Arc<dyn EventStore>, sizes: Sizes) -> Result<(Report, Report), CliError> {
    let appends = append(store.clone(), sizes.appends, sizes.concurrency, false).await?;
    let tokens = tokens(store.clone(), sizes.requests, &[sizes.concurrency])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| CliError::Usage("no measurement".into()))?;
    Ok((appends, tokens))
}

/// A new, empty ledger beside the one at `url` (a file next to it, or a schema in the same PostgreSQL
/// database), measured alongside it, and removed afterwards.
struct Sibling {
    url: String,
    drop: Cleanup,
}

enum Cleanup {
    Files(Vec<std::path::PathBuf>),
    Schema { url: String, schema: String },
}

impl Sibling {
    async fn create(url: &str) -> Result<Sibling, CliError> {
        let id = crate::ids::id().replace('-', "");
        if url.starts_with("postgres") {
            use sqlx::Connection;
            let schema = format!("bench_fresh_{id}");
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .map_err(|e| CliError::Usage(format!("cannot connect to create a fresh schema: {e}")))?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&mut conn)
                .await
                .map_err(|e| CliError::Usage(format!("cannot create schema {schema}: {e}")))?;
            let sep = if url.contains('?') { '&' } else { '?' };
            Ok(Sibling {
                url: format!("{url}{sep}options[search_path]={schema}"),
                drop: Cleanup::Schema {
                    url: url.to_owned(),
                    schema,
                },
            })
        } else {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .split('?')
                .next()
                .unwrap_or_default();
            let fresh = format!("{path}.fresh-{id}");
            let files = ["", "-wal", "-shm"]
                .iter()
                .map(|suffix| std::path::PathBuf::from(format!("{fresh}{suffix}")))
                .collect();
            Ok(Sibling {
                url: format!("sqlite://{fresh}"),
                drop: Cleanup::Files(files),
            })
        }
    }

    async fn remove(self) {
        match self.drop {
            Cleanup::Files(files) => {
                for f in files {
                    let _ = std::fs::remove_file(f);
                }
            }
            Cleanup::Schema { url, schema } => {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                        .execute(&mut conn)
                        .await;
                }
            }
        }
    }
}

/// Adds `events` events to the ledger at `url`, then measures it and a fresh ledger beside it in
/// alternating rounds, so a change in the machine's load between rounds affects both alike; the best
/// round of each counts. One line per measurement.
async fn history(
    store: Arc<dyn EventStore>,
    url: &str,
    events: u64,
    sizes: Sizes,
) -> Result<Vec<String>, CliError> {
    let sibling = Sibling::create(url).await?;
    let fresh = match store::open(&sibling.url).await {
        Ok(fresh) => fresh,
        Err(e) => {
            sibling.remove().await;
            return Err(e.into());
        }
    };
    let result = compare(&fresh, &store, events, sizes).await;
    fresh.close().await;
    sibling.remove().await;
    result
}

async fn compare(
    fresh: &Arc<dyn EventStore>,
    aged: &Arc<dyn EventStore>,
    events: u64,
    sizes: Sizes,
) -> Result<Vec<String>, CliError> {
    let concurrency = sizes.concurrency;
    let started = stopwatch();
    fill(aged.clone(), events).await?;
    let filled = started.elapsed();
    eprintln!(
        "added {events} events in {:.1} s ({:.0} events/s)",
        filled.as_secs_f64(),
        events as f64 / filled.as_secs_f64()
    );
    // An unmeasured round of each first: pools, caches and plan caches start cold.
    measure(fresh, sizes).await?;
    measure(aged, sizes).await?;
    let fresh_at = fresh.head().await?.position;
    let aged_at = aged.head().await?.position;
    let best = |a: Option<Report>, b: Report| match a {
        Some(a) if a.rate() >= b.rate() => a,
        _ => b,
    };
    let (mut fa, mut ft, mut aa, mut at) = (None, None, None, None);
    for round in 0..sizes.rounds {
        let (appends, tokens) = measure(fresh, sizes).await?;
        eprintln!(
            "round {round}: fresh {:.0} events/s, {:.0} tokens/s",
            appends.rate(),
            tokens.rate()
        );
        fa = Some(best(fa, appends));
        ft = Some(best(ft, tokens));
        let (appends, tokens) = measure(aged, sizes).await?;
        eprintln!(
            "round {round}: aged {:.0} events/s, {:.0} tokens/s",
            appends.rate(),
            tokens.rate()
        );
        aa = Some(best(aa, appends));
        at = Some(best(at, tokens));
    }
    let (Some(fa), Some(ft), Some(aa), Some(at)) = (fa, ft, aa, at) else {
        return Err(CliError::Usage("no measurement".into()));
    };
    let line = |what: &str, unit: &str, fresh: &Report, later: &Report| {
        format!(
            "{what} concurrency {concurrency}: {:.0} {unit} (p99 {:.1} ms) with {fresh_at} events, \
             {:.0} {unit} (p99 {:.1} ms) with {aged_at}: ratio {:.2}",
            fresh.rate(),
            fresh.p99.as_secs_f64() * 1e3,
            later.rate(),
            later.p99.as_secs_f64() * 1e3,
            later.rate() / fresh.rate()
        )
    };
    Ok(vec![
        line("appends", "events/s", &fa, &aa),
        line("client_credentials", "tokens/s", &ft, &at),
    ])
}

/// Fills the ledger with `events` events, then times verify and replay on it, each with its peak memory.
async fn audit(store: &Arc<dyn EventStore>, events: u64) -> Result<Vec<String>, CliError> {
    use crate::audit::{replay, verify};
    if events > 0 {
        let started = stopwatch();
        fill(store.clone(), events).await?;
        eprintln!(
            "added {events} events in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let count = store.head().await?.position;
    let mut lines = Vec::new();

    let peak = PeakMemory::reset();
    let started = stopwatch();
    let verdict = verify::verify(store.as_ref(), None).await?;
    let took = started.elapsed();
    if !matches!(verdict, verify::Verdict::Intact { .. }) {
        return Err(CliError::Usage(format!(
            "the ledger does not verify: {verdict:?}"
        )));
    }
    lines.push(audit_line("audit verify", count, took, peak.read()));

    let peak = PeakMemory::reset();
    let started = stopwatch();
    let diffs = replay::compare(store.as_ref()).await?;
    let took = started.elapsed();
    if !diffs.is_empty() {
        return Err(CliError::Usage(format!(
            "the replay differs from the stored rows in {} places",
            diffs.len()
        )));
    }
    lines.push(audit_line("audit replay", count, took, peak.read()));
    Ok(lines)
}

fn audit_line(what: &str, events: u64, took: Duration, peak_bytes: Option<u64>) -> String {
    let peak = peak_bytes.map_or_else(
        || "peak memory unknown".to_owned(),
        |b| format!("peak RSS {} MB", b / 1_000_000),
    );
    format!(
        "{what} of {events} events in {:.2} s ({:.0} events/s), {peak}",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64().max(1e-9)
    )
}

/// The process's peak resident memory since [`PeakMemory::reset`] (Linux: `VmHWM`).
struct PeakMemory;

impl PeakMemory {
    /// Resets the kernel's high-water mark to the current resident size, where the kernel allows it.
    fn reset() -> PeakMemory {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        PeakMemory
    }

    /// The high-water mark in bytes, `None` where `/proc/self/status` does not say.
    fn read(&self) -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        vm_hwm_bytes(&status)
    }
}

/// The `VmHWM:   123 kB` line of a `/proc/<pid>/status` text, in bytes.
fn vm_hwm_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Appends `count` token events to distinct streams, a hundred per append, as fast as the writer takes
/// them: history to measure against, not a measurement.
async fn fill(store: Arc<dyn EventStore>, count: u64) -> Result<(), CliError> {
    const TASKS: u64 = 16;
    const PER_APPEND: u64 = 100;
    let run = crate::ids::id();
    let now = store.clock().now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let run = run.clone();
        let share = share_of(count, TASKS, t);
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < share {
                let n = PER_APPEND.min(share - done);
                let request = (done..done + n)
                    .map(|i| {
                        let jti = format!("fill-{run}-{t}-{i}");
                        AppendRequest::to_stream(
                            format!("token-{jti}"),
                            ExpectedVersion::NoStream,
                            vec![token_event(&jti, now)],
                        )
                    })
                    .reduce(AppendRequest::and)
                    .unwrap_or_default();
                store
                    .append(request)
                    .await
                    .map_err(|e| format!("append failed: {e}"))?;
                done += n;
            }
            Ok(Vec::new())
        }));
    }
    report(count, stopwatch(), tasks).await.map(drop)
}

/// Serves the real router on a loopback port and drives `client_credentials` through it over HTTP.
async fn tokens(store: Arc<dyn EventStore>, count: u64, levels: &[u64]) -> Result<Vec<Report>, CliError> {
    let bench = BenchServer::start(store, &["client_credentials"]).await?;
    let mut reports = Vec::new();
    for &concurrency in levels {
        reports.push(
            load(
                &bench.base,
                &bench.client_id,
                &bench.secret,
                count,
                concurrency.max(1),
            )
            .await?,
        );
    }
    bench.stop();
    Ok(reports)
}

async fn load(
    base: &str,
    client_id: &str,
    secret: &str,
    count: u64,
    concurrency: u64,
) -> Result<Report, CliError> {
    let http = load_client(concurrency)?;
    let url = format!("{base}/token");
    let started = stopwatch();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (http, url, client_id, secret) =
            (http.clone(), url.clone(), client_id.to_owned(), secret.to_owned());
        let share = share_of(count, concurrency, t);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share as usize);
            for _ in 0..share {
                let began = stopwatch();
                let r = http
                    .post(&url)
                    .basic_auth(&client_id, Some(&secret))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let ok = r.status().is_success();
                let _ = r.bytes().await;
                latencies.push(began.elapsed());
                if !ok {
                    return Err("a token request failed".to_owned());
                }
            }
            Ok(latencies)
        }));
    }
    report(count, started, tasks).await
}

/// One form per request, prepared before the clock starts.
type Forms = Vec<Vec<(String, String)>>;

/// Each grant's throughput against an in-process server, `client_credentials` first; one line each, the
/// others with their ratio to it.
async fn grants(store: Arc<dyn EventStore>, count: u64, concurrency: u64) -> Result<Vec<String>, CliError> {
    use crate::grants::GrantType;
    let exchange = GrantType::TokenExchange.name();
    let bearer = GrantType::JwtBearer.name();
    let issuer = AssertionIssuer::new()?;
    let bench = BenchServer::start_with(
        store,
        &["client_credentials", exchange, bearer],
        |config, spec| {
            config.trusted_issuers.push(issuer.config());
            spec.token_exchange = Some(projections::event::TokenExchangeSettings {
                impersonation: true,
                ..Default::default()
            });
        },
    )
    .await?;
    let now = bench.app.now();
    crate::users::add(bench.app.store.as_ref(), BENCH_USER, serde_json::json!({}), now)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let form = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let cc: Forms = (0..count)
        .map(|_| form(&[("grant_type", "client_credentials")]))
        .collect();
    // One access token, exchanged again and again: each exchange is checked and recorded on its own.
    let subject = first_token(&bench).await?;
    let exchanges: Forms = (0..count)
        .map(|_| {
            form(&[
                ("grant_type", exchange),
                ("subject_token", &subject),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
            ])
        })
        .collect();
    // Assertions are signed before the clock starts: the issuer's signing is not this server's work.
    let audience = format!("{}/token", bench.base);
    let assertions: Forms = (0..count)
        .map(|_| {
            let jwt = issuer.sign(&audience, bench.app.now())?;
            Ok(form(&[("grant_type", bearer), ("assertion", &jwt)]))
        })
        .collect::<Result<_, CliError>>()?;
    // A warm-up, then each grant in turn.
    load_forms(&bench, cc.iter().take(2_000).cloned().collect(), concurrency).await?;
    let base = load_forms(&bench, cc, concurrency).await?;
    let exchanged = load_forms(&bench, exchanges, concurrency).await?;
    let asserted = load_forms(&bench, assertions, concurrency).await?;
    bench.stop();
    let ratio = |r: &Report| format!("({:.2} of client_credentials)", r.rate() / base.rate());
    Ok(vec![
        format!(
            "client_credentials concurrency {concurrency}: {}",
            base.as_tokens()
        ),
        format!(
            "token-exchange concurrency {concurrency}: {} {}",
            exchanged.as_tokens(),
            ratio(&exchanged)
        ),
        format!(
            "jwt-bearer concurrency {concurrency}: {} {}",
            asserted.as_tokens(),
            ratio(&asserted)
        ),
    ])
}

/// The user the benchmark's assertions name.
const BENCH_USER: &str = "bench-user";

/// A trusted issuer for the JWT bearer grant: an ES256 key of its own, trusted inline.
struct AssertionIssuer {
    issuer: String,
    encoding: jsonwebtoken::EncodingKey,
    jwk: serde_json::Value,
}

impl AssertionIssuer {
    fn new() -> Result<AssertionIssuer, CliError> {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        use jsonwebtoken::{Algorithm, EncodingKey, jwk::Jwk};
        let failed = |e: String| CliError::Usage(format!("the benchmark issuer's key: {e}"));
        let pair =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|e| failed(e.to_string()))?;
        let pkcs8 = pair.to_pkcs8v1().map_err(|e| failed(e.to_string()))?;
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk =
            Jwk::from_encoding_key(&encoding, Algorithm::ES256).map_err(|e| failed(e.to_string()))?;
        jwk.common.key_id = Some("bench".into());
        Ok(AssertionIssuer {
            issuer: format!("https://bench-issuer-{}.example", crate::ids::id()),
            encoding,
            jwk: serde_json::to_value(&jwk).map_err(|e| failed(e.to_string()))?,
        })
    }

    /// Trusted for the benchmark user only, by username, for the benchmark scope.
    fn config(&self) -> crate::trust::issuers::TrustedIssuerConfig {
        crate::trust::issuers::TrustedIssuerConfig {
            issuer: self.issuer.clone(),
            jwks: Some(serde_json::json!({ "keys": [self.jwk] })),
            jwks_uri: None,
            subjects: crate::trust::issuers::SubjectsConfig::List(vec![BENCH_USER.into()]),
            subject_mapping: projections::event::SubjectMapping::Username,
            scopes: vec!["messages:read".into()],
            max_assertion_lifetime_seconds: 300,
            algorithms: vec!["ES256".into()],
        }
    }

    /// An assertion about the benchmark user for `audience`, with a `jti` of its own.
    fn sign(&self, audience: &str, now: projections::event::UnixSeconds) -> Result<String, CliError> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("bench".into());
        let claims = serde_json::json!({
            "iss": self.issuer, "sub": BENCH_USER, "aud": audience,
            "iat": now, "exp": now + 240, "jti": crate::ids::id(),
        });
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| CliError::Usage(e.to_string()))
    }
}

/// A `client_credentials` access token of the benchmark client.
async fn first_token(bench: &BenchServer) -> Result<String, CliError> {
    let body: serde_json::Value = load_client(1)?
        .post(format!("{}/token", bench.base))
        .basic_auth(&bench.client_id, Some(&bench.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?
        .json()
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CliError::Usage(format!("no token: {body}")))
}

/// Sends `forms` to the token endpoint as the benchmark client, `concurrency` workers at once, each
/// answer checked.
async fn load_forms(bench: &BenchServer, forms: Forms, concurrency: u64) -> Result<Report, CliError> {
    let count = forms.len() as u64;
    let http = load_client(concurrency)?;
    let url = format!("{}/token", bench.base);
    let mut shares: Vec<Forms> = (0..concurrency).map(|_| Vec::new()).collect();
    for (i, f) in forms.into_iter().enumerate() {
        shares[i % concurrency as usize].push(f);
    }
    let started = stopwatch();
    let mut tasks = Vec::new();
    for share in shares {
        let (http, url, client_id, secret) = (
            http.clone(),
            url.clone(),
            bench.client_id.clone(),
            bench.secret.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share.len());
            for form in share {
                let began = stopwatch();
                let r = http
                    .post(&url)
                    .basic_auth(&client_id, Some(&secret))
                    .form(&form)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = r.status();
                let body = r.bytes().await.map_err(|e| e.to_string())?;
                latencies.push(began.elapsed());
                if !status.is_success() {
                    return Err(format!(
                        "a token request failed: {status} {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
            }
            Ok(latencies)
        }));
    }
    report(count, started, tasks).await
}

/// The HTTP client a load generator's workers share, keeping one connection per worker.
fn load_client(concurrency: u64) -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency as usize)
        .build()
        .map_err(|e| CliError::Usage(e.to_string()))
}

/// How many of `count` requests worker `t` of `concurrency` sends: an even split, the rest to the first.
fn share_of(count: u64, concurrency: u64, t: u64) -> u64 {
    count / concurrency + u64::from(t < count % concurrency)
}

/// Waits for every worker's latencies and reports the run that began at `started`.
async fn report(
    count: u64,
    started: Instant,
    workers: Vec<tokio::task::JoinHandle<Result<Vec<Duration>, String>>>,
) -> Result<Report, CliError> {
    let mut all = Vec::with_capacity(count as usize);
    for w in workers {
        let latencies = w
            .await
            .map_err(|e| CliError::Usage(format!("benchmark task failed: {e}")))?
            .map_err(CliError::Usage)?;
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

/// Throughput and latency of one run.
#[derive(Debug, Clone)]
pub struct Report {
    pub count: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl Report {
    /// Completed operations per second.
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line("appends", "events/s"))
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
        act: None,
        may_act: None,
        dpop_jkt: None,
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
    let run = crate::ids::id();
    let now = store.clock().now();
    let started = stopwatch();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let store = store.clone();
        let run = run.clone();
        let share = share_of(count, concurrency, t);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share as usize);
            for i in 0..share {
                let jti = format!("{run}-{t}-{i}");
                let stream = projections::event::streams::token(&jti);
                let request = AppendRequest::to_stream(
                    &stream,
                    ExpectedVersion::NoStream,
                    vec![token_event(&jti, now)],
                );
                let began = stopwatch();
                let result = store.append(request).await;
                latencies.push(began.elapsed());
                match result {
                    Ok(r) if acks => {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ack {stream} {}", r.first_position);
                    }
                    Ok(_) => {}
                    Err(e) => return Err(format!("append failed: {e}")),
                }
            }
            Ok(latencies)
        }));
    }
    report(count, started, tasks).await
}

/// Average time of one full issuance decision over 10 scopes with 3 authorizers each.
fn policy_decisions(count: u64, with_rego: bool) -> Result<Duration, CliError> {
    use crate::issuance::{IssuanceRequest, Policy, decide};
    let third = if with_rego { "rego" } else { "fresh" };
    let mut toml = String::from(
        r#"
[[authorizers]]
name = "machines"
type = "client"
audiences = ["machine"]
[[authorizers]]
name = "team"
type = "subject"
require = [{ attribute = "groups", contains = "billing" }]
[[authorizers]]
name = "fresh"
type = "authentication-freshness"
full_ttl_seconds = 3600
[[authorizers]]
name = "rego"
type = "rego"
source = """
package consent_ledger
import rego.v1
default decision := {"verdict": "deny", "reason": "not a machine"}
decision := {"verdict": "allow"} if input.context.client.audience == "machine"
"""
"#,
    );
    for i in 0..10 {
        toml.push_str(&format!(
            "[[scopes]]\nname = \"s{i}\"\nauthorizers = [\"machines\", \"team\", \"{third}\"]\n"
        ));
    }
    let config = crate::config::Config::parse("bench", &toml)?;
    let policy = Policy::from_config(&config).map_err(|(k, p)| CliError::Usage(format!("{k}: {p}")))?;
    let scopes: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    let client = projections::clients::Client {
        spec: machine_client(
            "bench",
            scopes.clone(),
            serde_json::json!({"groups": ["billing"]}),
        ),
        disabled: None,
        registered_at: 0,
        updated_at: 0,
    };
    let auth = projections::event::AuthContext::default();
    let external = std::collections::BTreeMap::new();
    // One instant for every decision: what is measured is the policy, not the clock.
    let now = crate::clock::SystemClock.now();
    let started = stopwatch();
    for _ in 0..count {
        let decision = decide(
            &policy,
            &IssuanceRequest {
                client: &client,
                subject: "bench",
                subject_attributes: &client.spec.metadata,
                requested: Some(&scopes),
                resource: None,
                grant_type: "client_credentials",
                user_present: false,
                auth: &auth,
                delegation: None,
                authorization_details: &serde_json::Value::Null,
                consents: &[],
                approved_now: &[],
                fresh_since: None,
                external: &external,
                now,
            },
        )
        .map_err(|e| CliError::Usage(format!("benchmark policy refused: {e}")))?;
        std::hint::black_box(decision);
    }
    Ok(started.elapsed() / count as u32)
}

/// A first-party machine client for the benchmarks.
fn machine_client(
    client_id: &str,
    scopes: Vec<String>,
    metadata: serde_json::Value,
) -> projections::event::ClientSpec {
    projections::event::ClientSpec {
        client_id: client_id.into(),
        name: "Benchmark".into(),
        kind: projections::event::ClientKind::FirstParty,
        audience: projections::event::ClientAudience::Machine,
        dynamically_registered: false,
        redirect_uris: vec![],
        grant_types: vec!["client_credentials".into()],
        scopes,
        token_endpoint_auth_method: "client_secret_basic".into(),
        secret_hash: None,
        jwks: None,
        jwks_uri: None,
        resources: vec![],
        metadata,
        ..Default::default()
    }
}

/// A monotonic instant for measuring elapsed time: benchmark timing, never a decision.
#[allow(clippy::disallowed_methods)] // timing the benchmark is what a monotonic clock is for
fn stopwatch() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_memory_is_read_from_the_vm_hwm_line() {
        let status = "Name:\tconsent-ledger\nVmPeak:\t  900 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(vm_hwm_bytes(status), Some(2048 * 1024));
        assert_eq!(vm_hwm_bytes("Name:\tx\n"), None);
    }
}

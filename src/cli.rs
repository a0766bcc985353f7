//! The command line: parse, run one command, turn its outcome into an exit code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use projections::clients::Client;
use projections::event::{ClientAudience, ClientKind, ClientSpec, UnixSeconds};

use crate::app::App;
use crate::audit::checkpoint::{self, PublicKey, SignedCheckpoint};
use crate::audit::progress::{self, Progress};
use crate::audit::replay::{self, Until};
use crate::audit::verify::{self, Anchor, Verdict};
use crate::config::{Config, ConfigError};
use crate::store::{self, EventStore};

/// The default ledger: a SQLite file beside the working directory.
pub const DEFAULT_DATABASE: &str = "sqlite://./data/consent-ledger.db";

/// consent-ledger: an OAuth 2.0 authorization server with a tamper-evident ledger.
#[derive(Debug, Parser)]
#[command(name = "consent-ledger", version)]
pub struct Cli {
    /// Database URL: sqlite://PATH (default ./data/consent-ledger.db) or postgres://… [env: DATABASE_URL]
    #[arg(long, global = true)]
    pub database: Option<String>,
    /// Configuration file (TOML); ./consent-ledger.toml is read when present.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log lines as text for people, or as one JSON object per line for a log pipeline.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// No progress on standard error for long commands (audit verify, audit replay).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Sends the process's log lines to standard error in `format`; the filter is `RUST_LOG`'s, by default
/// `info` with sqlx's per-statement lines left out. Every line logged while a request is handled carries
/// its `request` span (id, method, path).
pub fn init_logs(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process; boxing would only add noise to the match
pub enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on (default from the config, 127.0.0.1:8080). [env: BIND]
        #[arg(long)]
        bind: Option<SocketAddr>,
        /// Also publish the ledger to this NATS JetStream server, with `relay`'s defaults (stream
        /// LEDGER, subjects ledger.<EventType>).
        #[arg(long)]
        relay_nats: Option<String>,
    },
    /// Register clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Manage local users: accounts, passwords, TOTP.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Check and replay the ledger.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Measure the server on this machine.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Publish every committed event, in position order, to a NATS JetStream stream; runs until Ctrl-C.
    Relay(RelayArgs),
}

/// Where the relay publishes the ledger.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// The NATS server, e.g. nats://127.0.0.1:4222. [env: RELAY_NATS_URL]
    #[arg(long = "nats", env = "RELAY_NATS_URL")]
    pub nats: String,
    /// The JetStream stream; created when missing.
    #[arg(long, default_value = crate::relay::DEFAULT_STREAM)]
    pub stream: String,
    /// Events are published on PREFIX.<EventType>, e.g. ledger.TokenIssued.
    #[arg(long, default_value = crate::relay::DEFAULT_SUBJECT_PREFIX)]
    pub subject_prefix: String,
    /// How long the stream remembers message ids (the ledger positions) to drop duplicates, in seconds.
    #[arg(long, default_value_t = 120)]
    pub duplicate_window_secs: u64,
    /// How often to look for new events once everything is published, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub poll_ms: u64,
    /// Publications awaiting their acknowledgement at once.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
}

impl RelayArgs {
    /// The relay's settings.
    pub fn config(&self) -> crate::relay::RelayConfig {
        let mut c = crate::relay::RelayConfig::new(self.nats.clone());
        c.stream = self.stream.clone();
        c.subject_prefix = self.subject_prefix.clone();
        c.duplicate_window = std::time::Duration::from_secs(self.duplicate_window_secs);
        c.poll_interval = std::time::Duration::from_millis(self.poll_ms);
        c.max_in_flight = self.max_in_flight;
        c
    }
}

/// Client registration commands.
#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client; prints its generated secret once.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// first_party or third_party.
        #[arg(long, default_value = "third_party")]
        kind: String,
        /// machine or human.
        #[arg(long, default_value = "machine")]
        audience: String,
        #[arg(long = "grant-type", default_value = "client_credentials")]
        grant_types: Vec<String>,
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[arg(long = "resource")]
        resources: Vec<String>,
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        #[arg(long, default_value = "client_secret_basic")]
        auth_method: String,
        /// Token exchange (RFC 8693): may exchange a token without an actor token.
        #[arg(long)]
        token_exchange_impersonation: bool,
        /// Token exchange: a subject whose access token this client may present as the actor.
        #[arg(long = "token-exchange-actor")]
        token_exchange_actors: Vec<String>,
        /// OpenID CIBA: poll or ping (with the grant type urn:openid:params:grant-type:ciba).
        #[arg(long)]
        backchannel_token_delivery_mode: Option<String>,
        /// OpenID CIBA ping mode: where the client is pinged (https, or http on loopback).
        #[arg(long)]
        backchannel_client_notification_endpoint: Option<String>,
        /// The assisted token flow: an origin that may frame /assisted-token (with the grant type
        /// urn:curity:params:grant-type:assisted-token and --auth-method none); repeatable.
        #[arg(long = "allowed-origin")]
        allowed_origins: Vec<String>,
        /// An auditor: may be granted the audit scope by client_credentials (the audit API).
        #[arg(long)]
        auditor: bool,
    },
}

/// Local user commands. Passwords are read from standard input, never from the command line.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Register a user.
    Add {
        username: String,
        /// The user's attributes, a JSON object (read by the subject authorizers).
        #[arg(long)]
        attributes: Option<String>,
        /// Also set a password, read as one line from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password, read as one line from standard input.
    SetPassword { username: String },
    /// Replace a user's attributes with a JSON object.
    SetAttributes { username: String, attributes: String },
    /// Enroll (or replace) a user's TOTP second factor; prints the secret and otpauth:// URI once.
    EnrollTotp { username: String },
    /// Stop a user from signing in.
    Disable {
        username: String,
        #[arg(long, default_value = "disabled by an operator")]
        reason: String,
    },
}

/// Signing key commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new key and make it current; the old one stays in the JWKS until its tokens expire.
    Rotate,
}

/// Auditor commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; exit 0 only when it is intact.
    Verify {
        /// A POSITION:HASH recorded earlier that the chain must still contain.
        #[arg(long)]
        anchor: Option<Anchor>,
        /// Checkpoints exported earlier (`audit checkpoints`): the ledger must still match each one.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// The checkpoint public key(s) to check signatures with, a JWK or a JWK set kept off the
        /// server; by default the keys the ledger publishes.
        #[arg(long)]
        checkpoint_key: Option<PathBuf>,
    },
    /// Export signed checkpoints, one JSON object per line, smallest first.
    Checkpoints {
        /// Only checkpoints of a larger size (to append to an earlier export).
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Check an inclusion proof (`GET /audit/events/{position}/proof`) against a checkpoint; needs no
    /// database. Exit 0 when the event is in the checkpoint's tree.
    ProveIncluded {
        /// The proof, as the API answered it.
        #[arg(long)]
        proof: PathBuf,
        /// The checkpoint (or an export holding it) the proof is against.
        #[arg(long)]
        checkpoint: PathBuf,
        /// A JWK or JWK set to check the checkpoint's signature with.
        #[arg(long)]
        checkpoint_key: Option<PathBuf>,
    },
    /// Check a consistency proof (`GET /audit/checkpoints/consistency`) against the earlier checkpoint
    /// you kept; needs no database. Exit 0 when the later checkpoint extends it.
    ProveConsistent {
        /// The proof, as the API answered it.
        #[arg(long)]
        proof: PathBuf,
        /// The earlier checkpoint (or an export holding it).
        #[arg(long)]
        checkpoint: PathBuf,
        /// A JWK or JWK set to check both checkpoints' signatures with.
        #[arg(long)]
        checkpoint_key: Option<PathBuf>,
    },
    /// Explain why a token carries what it carries: each scope's authorizers, consent and outcome.
    Explain {
        jti: String,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the ledger's events as NDJSON to standard output, the lines of GET /audit/events.
    Export {
        /// Start after this position.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Only this stream's events.
        #[arg(long)]
        stream: Option<String>,
        /// Only events of this type (e.g. TokenIssued).
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Only events whose payload names this subject.
        #[arg(long)]
        subject: Option<String>,
        /// Only events whose payload names this client.
        #[arg(long)]
        client_id: Option<String>,
        /// Only events recorded at or after this RFC 3339 time.
        #[arg(long)]
        from: Option<String>,
        /// Only events recorded at or before this RFC 3339 time.
        #[arg(long)]
        to: Option<String>,
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
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Append(#[from] store::AppendError),
    #[error(transparent)]
    Registration(#[from] crate::clients::RegistrationError),
    #[error(transparent)]
    Startup(#[from] crate::startup::StartupError),
    #[error(transparent)]
    Relay(#[from] crate::relay::RelayError),
    #[error(transparent)]
    Checkpointer(#[from] crate::audit::checkpointer::CheckpointerError),
    #[error(transparent)]
    Export(#[from] crate::audit::export::ExportError),
}

/// Reads a file an auditor gave, naming it in the error.
fn read_text(path: &std::path::Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))
}

/// Reads a JSON document an auditor gave.
fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T, CliError> {
    serde_json::from_str(&read_text(path)?).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

/// The checkpoints in `path`.
fn read_checkpoints(path: &std::path::Path) -> Result<Vec<SignedCheckpoint>, CliError> {
    checkpoint::parse_checkpoints(&read_text(path)?)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

/// The checkpoint public keys in `path` (a JWK or a JWK set).
fn read_keys(path: &std::path::Path) -> Result<Vec<PublicKey>, CliError> {
    let doc: serde_json::Value = read_json(path)?;
    PublicKey::from_jwks(&doc).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

/// The exit of a proof check: its line on standard output, 0 when it holds.
fn proof_outcome(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            println!("not proven: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the audit commands that need no database.
fn offline_audit(cmd: &AuditCommand) -> Result<Option<ExitCode>, CliError> {
    match cmd {
        AuditCommand::ProveIncluded {
            proof,
            checkpoint: file,
            checkpoint_key,
        } => {
            let proof: checkpoint::InclusionProof = read_json(proof)?;
            let checkpoints = read_checkpoints(file)?;
            let keys = checkpoint_key.as_deref().map(read_keys).transpose()?;
            let result = checkpoint::of_size(&checkpoints, proof.tree_size)
                .and_then(|c| checkpoint::check_inclusion(&proof, c, keys.as_deref()));
            Ok(Some(proof_outcome(result)))
        }
        AuditCommand::ProveConsistent {
            proof,
            checkpoint: file,
            checkpoint_key,
        } => {
            let proof: checkpoint::ConsistencyProof = read_json(proof)?;
            let checkpoints = read_checkpoints(file)?;
            let keys = checkpoint_key.as_deref().map(read_keys).transpose()?;
            let result = checkpoint::of_size(&checkpoints, proof.from.position)
                .and_then(|c| checkpoint::check_consistency(&proof, c, keys.as_deref()));
            Ok(Some(proof_outcome(result)))
        }
        _ => Ok(None),
    }
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
    let config = Config::load(cli.config.as_deref(), |k| std::env::var(k).ok())?;
    let url = cli
        .database
        .or_else(|| config.database.clone())
        .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    let progress_mode = if cli.quiet {
        progress::Mode::Quiet
    } else {
        progress::Mode::Auto
    };
    match cli.command {
        Command::Bench(cmd) => return crate::bench::run(cmd, &url).await,
        Command::Audit(AuditCommand::Replay { until: Some(u) }) => {
            // Parse before opening so a typo does not touch the database.
            let until = parse_until(&u)?;
            let store = store::open(&url).await?;
            let mut progress = Progress::new(progress_mode, "replay", "events", 0);
            let (state, last) = replay::fold_with(store.as_ref(), until, &mut progress).await?;
            let out = serde_json::json!({ "position": last, "state": state });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            store.close().await;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Audit(ref cmd) => {
            if let Some(code) = offline_audit(cmd)? {
                return Ok(code);
            }
        }
        _ => {}
    }
    let store = store::open(&url).await?;
    // A command is one request: it reads the clock once.
    let now = store.clock().now();
    let code = match cli.command {
        Command::Serve { bind, relay_nats } => {
            let bind = match bind {
                Some(b) => b,
                None => config
                    .bind
                    .parse()
                    .map_err(|_| CliError::Usage(format!("bad bind address {}", config.bind)))?,
            };
            if let Some(url) = relay_nats {
                spawn_relay(store.clone(), crate::relay::RelayConfig::new(url));
            }
            serve(store.clone(), config, cli.config.clone(), bind, now).await?
        }
        Command::Clients(ClientsCommand::Add {
            id,
            name,
            kind,
            audience,
            grant_types,
            scopes,
            resources,
            redirect_uris,
            auth_method,
            token_exchange_impersonation,
            token_exchange_actors,
            backchannel_token_delivery_mode,
            backchannel_client_notification_endpoint,
            allowed_origins,
            auditor,
        }) => {
            let kind: ClientKind = serde_json::from_value(serde_json::json!(kind))
                .map_err(|_| CliError::Usage("--kind is first_party or third_party".into()))?;
            let audience: ClientAudience = serde_json::from_value(serde_json::json!(audience))
                .map_err(|_| CliError::Usage("--audience is machine or human".into()))?;
            let policy = crate::issuance::Policy::from_config(&config)
                .map_err(|(key, problem)| CliError::Usage(format!("{key}: {problem}")))?;
            let undeclared = policy.undeclared_scopes(&scopes);
            if !undeclared.is_empty() {
                return Err(CliError::Usage(crate::issuance::undeclared_message(&undeclared)));
            }
            let secret = if auth_method.starts_with("client_secret") {
                Some(crate::ids::secret().map_err(|_| CliError::Usage("no randomness".into()))?)
            } else {
                None
            };
            // Only a client the flags let exchange something gets settings; registration checks them.
            let exchange = (token_exchange_impersonation || !token_exchange_actors.is_empty()).then_some(
                projections::event::TokenExchangeSettings {
                    impersonation: token_exchange_impersonation,
                    actors: projections::event::Actors::Only(token_exchange_actors),
                    refresh_tokens: false,
                },
            );
            let spec = ClientSpec {
                client_id: id.clone(),
                name,
                kind,
                audience,
                dynamically_registered: false,
                redirect_uris,
                grant_types,
                scopes,
                token_endpoint_auth_method: auth_method,
                secret_hash: secret.as_deref().map(crate::clients::hash_secret),
                jwks: None,
                jwks_uri: None,
                resources,
                metadata: serde_json::Value::Null,
                token_exchange: exchange,
                backchannel_token_delivery_mode: crate::clients::delivery_mode(
                    backchannel_token_delivery_mode.as_deref(),
                )?,
                backchannel_client_notification_endpoint,
                allowed_origins,
                auditor,
                ..Default::default()
            };
            let existing: Option<Client> = store::get(store.as_ref(), &id).await?;
            store
                .append(crate::clients::register(existing.as_ref(), spec, now)?)
                .await?;
            println!("client_id: {id}");
            if let Some(s) = secret {
                println!("client_secret: {s}");
                println!("(the secret is shown only now; the ledger keeps its SHA-256)");
            }
            ExitCode::SUCCESS
        }
        Command::Users(cmd) => users_command(store.as_ref(), &config, cmd, now).await?,
        Command::Keys(KeysCommand::Rotate) => {
            let app = App::new(store.clone(), config)?;
            let key = app.keys.rotate(store.as_ref(), now).await?;
            println!("current signing key: {} ({})", key.kid, key.alg.name());
            ExitCode::SUCCESS
        }
        Command::Migrate => {
            println!("database migrated: {}", redact(&url));
            ExitCode::SUCCESS
        }
        Command::Audit(AuditCommand::Verify {
            anchor,
            checkpoints,
            checkpoint_key,
        }) => {
            // Read the auditor's files before the long walk, so a typo fails at once.
            let against = checkpoints.as_deref().map(read_checkpoints).transpose()?;
            let keys = checkpoint_key.as_deref().map(read_keys).transpose()?;
            let mut progress = Progress::new(progress_mode, "verify", "events", 0);
            match verify::verify_with(store.as_ref(), anchor.as_ref(), &mut progress).await? {
                Verdict::Intact { count, head_hash } => match against {
                    None => {
                        println!("intact: {count} events, head {head_hash}");
                        ExitCode::SUCCESS
                    }
                    Some(against) => {
                        let keys = match keys {
                            Some(k) => k,
                            None => published_keys(store.as_ref()).await?,
                        };
                        let mut progress = Progress::new(progress_mode, "checkpoints", "events", 0);
                        let verdict = crate::audit::checkpoint_verify::verify_checkpoints(
                            store.as_ref(),
                            &against,
                            &keys,
                            &mut progress,
                        )
                        .await?;
                        match verdict {
                            Verdict::Intact { count: covered, .. } => {
                                println!(
                                    "intact: {count} events, head {head_hash}; matches {} checkpoint(s) up to position {covered}",
                                    against.len()
                                );
                                ExitCode::SUCCESS
                            }
                            Verdict::Broken { position, reason } => {
                                println!("broken at position {position}: {reason}");
                                ExitCode::FAILURE
                            }
                        }
                    }
                },
                Verdict::Broken { position, reason } => {
                    println!("broken at position {position}: {reason}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Audit(AuditCommand::Checkpoints { after }) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let mut after = after;
            loop {
                let page = store.checkpoints_after(after, 1_000).await?;
                let Some(last) = page.last() else { break };
                after = last.position;
                for c in &page {
                    writeln!(out, "{}", serde_json::to_string(c).unwrap_or_default())?;
                }
            }
            out.flush()?;
            ExitCode::SUCCESS
        }
        Command::Audit(AuditCommand::ProveIncluded { .. } | AuditCommand::ProveConsistent { .. }) => {
            ExitCode::SUCCESS
        }
        Command::Audit(AuditCommand::Explain { jti, json }) => {
            match crate::audit::explain::explain(store.as_ref(), &jti).await? {
                Some(e) if json => {
                    println!("{}", serde_json::to_string_pretty(&e).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Some(e) => {
                    print!("{}", crate::audit::explain::render(&e));
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("error: the ledger holds no token {jti}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Audit(AuditCommand::Export {
            after,
            stream,
            event_type,
            subject,
            client_id,
            from,
            to,
        }) => {
            let time = |flag: &str, v: Option<String>| {
                v.map(|t| {
                    crate::audit::events::parse_time(&t)
                        .ok_or_else(|| CliError::Usage(format!("--{flag} {t:?} is not an RFC 3339 time")))
                })
                .transpose()
            };
            let filter = crate::audit::events::Filter {
                stream,
                event_type,
                subject,
                client_id,
                from: time("from", from)?,
                to: time("to", to)?,
                through: None,
            };
            let mut progress = Progress::new(progress_mode, "export", "events", 0);
            let mut out = std::io::BufWriter::new(std::io::stdout());
            crate::audit::export::export(store.as_ref(), &filter, after, &mut out, &mut progress).await?;
            ExitCode::SUCCESS
        }
        Command::Audit(AuditCommand::Replay { .. }) => {
            let mut progress = Progress::new(progress_mode, "replay", "events and rows", 0);
            let diffs = replay::compare_with(store.as_ref(), &mut progress).await?;
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
        Command::Relay(args) => {
            crate::relay::run(store.as_ref(), &args.config(), shutdown_signal()).await?;
            ExitCode::SUCCESS
        }
        Command::Bench(_) => ExitCode::SUCCESS,
    };
    store.close().await;
    Ok(code)
}

/// The checkpoint keys the ledger publishes.
async fn published_keys(store: &dyn EventStore) -> Result<Vec<PublicKey>, CliError> {
    store
        .checkpoint_keys()
        .await?
        .iter()
        .map(|jwk| {
            PublicKey::from_jwk(jwk)
                .map_err(|e| CliError::Store(store::StoreError::Corrupt(format!("checkpoint key: {e}"))))
        })
        .collect()
}

/// Parses a JSON object given on the command line.
fn json_object(text: &str) -> Result<serde_json::Value, CliError> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(CliError::Usage(format!(
            "attributes must be a JSON object, not {text:?}"
        ))),
    }
}

/// One line from standard input, without its line ending.
fn password_from_stdin() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    Ok(line.to_owned())
}

async fn users_command(
    store: &dyn EventStore,
    config: &Config,
    cmd: UsersCommand,
    now: UnixSeconds,
) -> Result<ExitCode, CliError> {
    let user_error = |e: crate::users::UserError| CliError::Usage(e.to_string());
    match cmd {
        UsersCommand::Add {
            username,
            attributes,
            password_stdin,
        } => {
            let attributes = match attributes {
                Some(a) => json_object(&a)?,
                None => serde_json::json!({}),
            };
            // Read and check the password before registering, so a bad one leaves no half-made user.
            let password = if password_stdin {
                let p = password_from_stdin()?;
                crate::users::password::check_strength(&p).map_err(|e| CliError::Usage(e.to_string()))?;
                Some(p)
            } else {
                None
            };
            let user = crate::users::add(store, &username, attributes, now)
                .await
                .map_err(user_error)?;
            if let Some(p) = password {
                crate::users::set_password(store, &username, &p, now)
                    .await
                    .map_err(user_error)?;
            }
            println!("username: {}", user.username);
            println!("subject: {}", user.subject);
        }
        UsersCommand::SetPassword { username } => {
            let p = password_from_stdin()?;
            crate::users::set_password(store, &username, &p, now)
                .await
                .map_err(user_error)?;
            println!("password set for {username}");
        }
        UsersCommand::SetAttributes { username, attributes } => {
            let attributes = json_object(&attributes)?;
            let existing = crate::users::get(store, &username).await?;
            let request = crate::users::set_attributes(existing.as_ref(), &username, attributes, now)
                .map_err(user_error)?;
            store.append(request).await?;
            println!("attributes set for {username}");
        }
        UsersCommand::EnrollTotp { username } => {
            let secret = crate::users::enroll_totp(store, &username, now)
                .await
                .map_err(user_error)?;
            let issuer = config
                .issuer
                .split_once("://")
                .map_or(config.issuer.as_str(), |(_, rest)| rest)
                .split('/')
                .next()
                .unwrap_or("consent-ledger");
            println!("secret: {}", crate::users::totp::base32_encode(&secret));
            println!(
                "uri: {}",
                crate::users::totp::otpauth_uri(issuer, &username, &secret)
            );
            println!("(shown only now; give it to the user's authenticator app)");
        }
        UsersCommand::Disable { username, reason } => {
            let existing = crate::users::get(store, &username).await?;
            let request =
                crate::users::disable(existing.as_ref(), &username, &reason, now).map_err(user_error)?;
            store.append(request).await?;
            println!("disabled {username}");
        }
    }
    Ok(ExitCode::SUCCESS)
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

async fn serve(
    store: Arc<dyn EventStore>,
    config: Config,
    config_file: Option<PathBuf>,
    bind: SocketAddr,
    now: UnixSeconds,
) -> Result<ExitCode, CliError> {
    let mut app = crate::startup::start(store, config, now).await?;
    app.config_file = config_file.or_else(|| {
        let default = PathBuf::from(crate::config::DEFAULT_CONFIG_FILE);
        default.exists().then_some(default)
    });
    let app = Arc::new(app);
    spawn_reload_on_sighup(app.clone());
    crate::audit::checkpointer::Checkpointer::for_app(&app)
        .await?
        .spawn();
    let app = crate::http::router(app);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| CliError::Usage(format!("cannot listen on {bind}: {e}")))?;
    tracing::info!(%bind, "listening");
    // The peer address reaches the handlers: failed sign-ins are counted per client address too.
    let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("stopped accepting requests; flushing the ledger writer");
    Ok(ExitCode::SUCCESS)
}

/// Runs the relay beside the server; its metrics appear on the server's `/metrics`. An error no retry
/// cures stops the relay, not the server.
fn spawn_relay(store: Arc<dyn EventStore>, config: crate::relay::RelayConfig) {
    tokio::spawn(async move {
        if let Err(e) = crate::relay::run(store.as_ref(), &config, std::future::pending()).await {
            tracing::error!(error = %e, "relay stopped; the server goes on");
        }
    });
}

/// Reloads the policy from the configuration file on every SIGHUP.
fn spawn_reload_on_sighup(app: Arc<App>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match app.reload_policy(app.now()).await {
                Ok(version) => tracing::info!(%version, "policy reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "policy reload refused; the previous policy stays in force")
                }
            }
        }
    });
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

//! A headless Chromium driven through chromedriver (fantoccini), and a client's callback endpoint.
//!
//! [`Browser::start`] runs `chromedriver --port=<free port>` as a child (killed on drop) and opens a
//! session. Without `/usr/bin/chromedriver` the test is skipped, unless
//! `CONSENT_LEDGER_BROWSER_TESTS=required` (CI sets it), when it fails.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::TestServer;

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// `required`: a missing chromedriver fails the test instead of skipping it.
pub const BROWSER_ENV: &str = "CONSENT_LEDGER_BROWSER_TESTS";

/// A chromedriver child and a WebDriver session on it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    port: u16,
    session: Option<String>,
}

impl Drop for Browser {
    /// Ends the session (so chromedriver quits Chromium) even when the test panicked, then kills
    /// chromedriver and whatever of its process group is left.
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            delete_session(self.port, &session);
        }
        let pid = self.driver.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `DELETE /session/{id}` to chromedriver, blocking (it runs in `Drop`); errors are ignored.
fn delete_session(port: u16, session: &str) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; `None` (after printing "skipped") when
    /// chromedriver is not installed and the browser tests are not required.
    pub async fn start() -> Option<Browser> {
        if !std::path::Path::new(CHROMEDRIVER).exists() {
            if std::env::var(BROWSER_ENV).as_deref() == Ok("required") {
                panic!(
                    "{BROWSER_ENV}=required but {CHROMEDRIVER} is missing (apt-get install chromium-driver)"
                );
            }
            eprintln!("skipped: {CHROMEDRIVER} is missing (set {BROWSER_ENV}=required to fail instead)");
            return None;
        }
        let port = free_port();
        let mut driver = Command::new(CHROMEDRIVER);
        // Its own process group, which Chromium joins: dropping the browser kills the whole group.
        std::os::unix::process::CommandExt::process_group(&mut driver, 0);
        let mut driver = driver
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        // Wait for chromedriver to listen.
        let mut ready = false;
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                ready = true;
                break;
            }
            if let Ok(Some(status)) = driver.try_wait() {
                panic!("chromedriver exited early: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !ready {
            let _ = driver.kill();
            panic!("chromedriver did not listen on {url} within 10 s");
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"],
                "binary": CHROMIUM,
            }),
        );
        let connected = ClientBuilder::rustls()
            .expect("TLS roots for the WebDriver client")
            .capabilities(caps)
            .connect(&url)
            .await;
        let client = match connected {
            Ok(c) => c,
            Err(e) => {
                let _ = driver.kill();
                panic!("opening a Chromium session through {url}: {e}");
            }
        };
        let session = client.session_id().await.ok().flatten();
        Some(Browser {
            client,
            driver,
            port,
            session,
        })
    }

    /// Ends the session (the driver is killed on drop).
    pub async fn close(mut self) {
        if self.client.clone().close().await.is_ok() {
            self.session = None;
        }
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The current URL's path (and query).
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Waits (up to 10 s) until the current URL's path is `path`.
    pub async fn wait_for_path(&self, path: &str) {
        for _ in 0..200 {
            let url = self.client.current_url().await.unwrap();
            if url.path() == path {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the browser is at {}, not {path}",
            self.client.current_url().await.unwrap()
        );
    }

    /// The input a `<label>` with exactly this text points at (`for=`): how a person finds a field.
    pub async fn field_labelled(&self, label: &str) -> fantoccini::elements::Element {
        let label_el = self
            .client
            .find(Locator::XPath(&format!("//label[normalize-space(.)='{label}']")))
            .await
            .unwrap_or_else(|e| panic!("no label {label:?}: {e}"));
        let id = label_el
            .attr("for")
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("label {label:?} names no field"));
        self.client.find(Locator::Id(&id)).await.unwrap()
    }

    /// The button whose text (accessible name) starts with `name`.
    pub async fn button(&self, name: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::XPath(&format!(
                "//button[starts-with(normalize-space(.), '{name}')]"
            )))
            .await
            .unwrap_or_else(|e| panic!("no button {name:?}: {e}"))
    }

    /// Starts recording the page's Content-Security-Policy violations (a blocked form submission or
    /// redirect leaves the browser where it was, silently); read them with [`Browser::csp_violations`].
    pub async fn record_csp_violations(&self) {
        self.client
            .execute(
                "window.__csp = []; document.addEventListener('securitypolicyviolation', \
                 e => window.__csp.push(e.effectiveDirective + ' blocked ' + e.blockedURI));",
                vec![],
            )
            .await
            .unwrap();
    }

    /// The violations recorded since [`Browser::record_csp_violations`] on this page.
    pub async fn csp_violations(&self) -> Vec<String> {
        let v = self
            .client
            .execute("return window.__csp || [];", vec![])
            .await
            .unwrap();
        serde_json::from_value(v).unwrap_or_default()
    }

    /// Saves a screenshot to `target/browser-artifacts/<name>`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Signs in on the sign-in page the browser is at, finding the fields by their labels.
    pub async fn sign_in(&self, username: &str, password: &str) {
        self.wait_for_path("/login").await;
        self.field_labelled("Username")
            .await
            .send_keys(username)
            .await
            .unwrap();
        self.field_labelled("Password")
            .await
            .send_keys(password)
            .await
            .unwrap();
        self.button("Sign in").await.click().await.unwrap();
    }
}

/// `target/browser-artifacts` of this workspace (or of `CARGO_TARGET_DIR`).
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("browser-artifacts")
}

/// A client's redirect endpoint at `http://127.0.0.1:<port>/cb` that records each query it receives.
pub struct Callback {
    pub url: String,
    received: Arc<Mutex<Vec<String>>>,
}

async fn record(State(received): State<Arc<Mutex<Vec<String>>>>, RawQuery(q): RawQuery) -> &'static str {
    received.lock().unwrap().push(q.unwrap_or_default());
    "Received. You can close this window."
}

impl Callback {
    pub async fn start() -> Callback {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/cb", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let router = axum::Router::new()
            .route("/cb", axum::routing::get(record))
            .with_state(received.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Callback { url, received }
    }

    /// Waits (up to 10 s) for the next query the callback receives, as parameters; `None` if none came.
    pub async fn next(&self) -> Option<BTreeMap<String, String>> {
        for _ in 0..200 {
            if let Some(q) = {
                let mut r = self.received.lock().unwrap();
                if r.is_empty() { None } else { Some(r.remove(0)) }
            } {
                return Some(form_urlencoded::parse(q.as_bytes()).into_owned().collect());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

/// The `/authorize` URL of a code request to `redirect_uri` with a PKCE challenge.
pub fn authorize_url(
    s: &TestServer,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    challenge: &str,
) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("scope", scope),
            ("state", "st-browser"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    format!("{}/authorize?{query}", s.base)
}

/// POST /token with the code, as the client behind `redirect_uri`.
pub async fn exchange(
    s: &TestServer,
    client: (&str, &str),
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> (u16, Value) {
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(client),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ],
        )
        .await;
    (status, body)
}

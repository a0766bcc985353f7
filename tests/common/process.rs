//! Server processes: the real binary, started the way an operator starts it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command};

/// Kills the server it holds when the test ends, however it ends.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the server at `base` answers `/readyz`.
pub async fn wait_ready(http: &reqwest::Client, base: &str) {
    for _ in 0..400 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server at {base} did not become ready");
}

/// A free loopback address to serve on.
pub fn free_bind() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// The binary, with no setting inherited from the environment the tests run in.
pub fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_consent-ledger"));
    for v in [
        "DATABASE_URL",
        "ISSUER",
        "BIND",
        "ADMIN_TOKEN",
        "METRICS_TOKEN",
        "KEY_ENCRYPTION_KEY",
    ] {
        c.env_remove(v);
    }
    c
}

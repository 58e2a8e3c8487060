//! The SignalR hub with Microsoft's own client: starts the demo server
//! with JWT authentication (its archive step held for 3 s, so a follower
//! subscribes while the task runs and sees it move) and runs
//! `e2e/signalr.test.mjs`, which follows a task with `@microsoft/signalr`
//! in Node and in headless Chromium, and checks that a bad token is
//! refused and that another subject cannot follow the task.
//!
//! Needs `node`, `npm ci --prefix apps/dtask-demo/e2e` and
//! `apt-get install -y chromium`; fails (never skips) with the command to
//! run when one is missing.

mod support;

use std::time::Duration;

use dtask_demo::server::ServerConfig;
use dtask_http::{Authenticator, JwtVerifier};
use support::Gate;
use support::node::{check_prerequisites, run_node};

const SECRET: &str = "the signalr test's secret, 32 bytes or more";
const AUDIENCE: &str = "dtask-signalr-e2e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsofts_signalr_client_follows_tasks_and_is_refused_a_bad_token() {
    check_prerequisites(&["@microsoft/signalr", "playwright-core"]);
    let verifier = JwtVerifier::hs256(SECRET.as_bytes())
        .expect("a usable secret")
        .audience(AUDIENCE);
    let config = ServerConfig {
        auth: Authenticator::default().jwt(verifier),
        ..ServerConfig::default()
    };
    let server = support::start_with(config, Some(Gate::Delay("CreateZipArchive", Duration::from_secs(3)))).await;
    let stdout = run_node(
        "signalr.test.mjs",
        &[
            ("DTASK_SERVER_URL", &server.url),
            ("DTASK_JWT_SECRET", SECRET),
            ("DTASK_JWT_AUDIENCE", AUDIENCE),
        ],
    )
    .await;
    assert!(stdout.contains("pass 3"), "the three SignalR tests ran:\n{stdout}");
    server.stop().await;
}

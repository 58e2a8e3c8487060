//! Schemathesis (`--checks all`) against the demo server's own OpenAPI
//! document, with authentication on and an operator's token made by PyJWT:
//! every generated request gets an answer the document allows, in the
//! shape it describes. A fixed seed keeps the run repeatable.
//!
//! Needs `pip install 'schemathesis>=4.3,<5' 'pyjwt[crypto]'`
//! (`scripts/test` installs them); fails, never skips, without them.

mod support;

use dtask_demo::server::ServerConfig;
use dtask_http::{Authenticator, JwtVerifier};

const SECRET: &str = "a-32-byte-test-secret-for-hs256!";

/// An operator's token, made by PyJWT (not by the code under test).
fn token() -> String {
    let script = format!(
        "import jwt, time; print(jwt.encode({{'sub': 'schemathesis', 'exp': int(time.time()) + 3600, \
         'roles': ['dtask-operator']}}, '{SECRET}', algorithm='HS256'))"
    );
    let output = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("run python3 (with PyJWT: pip install 'pyjwt[crypto]')");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure() {
    let auth = Authenticator::default().jwt(JwtVerifier::hs256(SECRET.as_bytes()).unwrap());
    let server = support::start_with(
        ServerConfig {
            auth,
            ..ServerConfig::default()
        },
        None,
    )
    .await;
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/schemathesis.toml");
    let run = tokio::process::Command::new("schemathesis")
        .arg("--no-color")
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/api/openapi.json", server.url))
        .args([
            "--checks",
            "all",
            "--seed",
            "7",
            "--max-examples",
            "30",
            "--request-timeout",
            "10",
        ])
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", token()))
        // The WebSocket routes answer upgrades only; Schemathesis speaks
        // plain HTTP (they are tested in http_stream.rs and
        // http_signalr.rs; the hub's negotiate request stays in).
        .args(["--exclude-path-regex", "/ws$|^/hubs/tasks$"])
        .output()
        .await
        .expect("run schemathesis (pip install 'schemathesis>=4.3,<5')");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("generated"), "nothing was generated:\n{stdout}");
    server.stop().await;
}

//! The Node.js tests of `e2e/` (playwright-core driving Debian's
//! `chromium`, Microsoft's SignalR client), run from Rust tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The npm package of the Node tests.
pub(crate) fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e")
}

/// Where Chromium is (`CHROMIUM_PATH`, default Debian's).
pub(crate) fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Fails with the command that installs what is missing: Node.js, the
/// npm packages `packages`, Chromium.
pub(crate) fn check_prerequisites(packages: &[&str]) {
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: install Node.js 20 or newer (apt-get install -y nodejs npm)"
    );
    for package in packages {
        assert!(
            e2e_dir()
                .join("node_modules")
                .join(package)
                .join("package.json")
                .exists(),
            "{package} is not installed: run `npm ci --prefix {}`",
            e2e_dir().display()
        );
    }
    assert!(
        chromium().exists(),
        "no Chromium at {}: run `apt-get install -y chromium` (or set CHROMIUM_PATH)",
        chromium().display()
    );
}

/// Runs the Node test `script` of `e2e/` with `env` (and Chromium's
/// path); fails unless it passes. Returns its report.
pub(crate) async fn run_node(script: &str, env: &[(&str, &str)]) -> String {
    let run = tokio::process::Command::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg(script)
        .current_dir(e2e_dir())
        .env("CHROMIUM_PATH", chromium())
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the Node test ends within 4 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(output.status.success(), "the Node test failed:\n{stdout}\n{stderr}");
    stdout
}

//! The dashboard end to end in a real headless Chromium: starts two demo
//! servers in-process (one plain, one whose archive step hangs until
//! cancelled) and runs `e2e/dashboard.test.mjs` (playwright-core driving
//! Debian's `chromium`) against them.
//!
//! Needs `node`, `npm ci --prefix apps/dtask-demo/e2e` and
//! `apt-get install -y chromium`; fails (never skips) with the command to
//! run when one is missing. Screenshots land in `$DTASK_SCREENSHOT_DIR`
//! (default `/tmp`): `dtask-dashboard.png`, `dtask-dashboard-narrow.png`,
//! `dtask-dashboard-running.png`, `dtask-dashboard-cancelled.png`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::Gate;

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Fails with the command that installs what is missing.
fn check_prerequisites() {
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: install Node.js 20 or newer (apt-get install -y nodejs npm)"
    );
    assert!(
        e2e_dir().join("node_modules/playwright-core/package.json").exists(),
        "playwright-core is not installed: run `npm ci --prefix {}`",
        e2e_dir().display()
    );
    assert!(
        chromium().exists(),
        "no Chromium at {}: run `apt-get install -y chromium` (or set CHROMIUM_PATH)",
        chromium().display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_uploads_shows_live_progress_downloads_and_cancels_in_chromium() {
    check_prerequisites();
    // A short hold on the archive step lets the page show the task running.
    let server = support::start(Some(Gate::Delay("CreateZipArchive", Duration::from_millis(1500)))).await;
    let hanging = support::start(Some(Gate::Hang("CreateZipArchive"))).await;
    let shots = std::env::var("DTASK_SCREENSHOT_DIR").unwrap_or_else(|_| "/tmp".to_owned());
    let run = tokio::process::Command::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg("dashboard.test.mjs")
        .current_dir(e2e_dir())
        .env("DTASK_SERVER_URL", &server.url)
        .env("DTASK_HANGING_SERVER_URL", &hanging.url)
        .env("CHROMIUM_PATH", chromium())
        .env("DTASK_SCREENSHOT_DIR", &shots)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser test ends within 4 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(output.status.success(), "the browser test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("pass 3"), "the three browser tests ran:\n{stdout}");
    for shot in [
        "dtask-dashboard.png",
        "dtask-dashboard-narrow.png",
        "dtask-dashboard-running.png",
        "dtask-dashboard-cancelled.png",
    ] {
        assert!(Path::new(&shots).join(shot).exists(), "screenshot {shot} taken");
    }
    server.stop().await;
    hanging.stop().await;
}

//! The demo binary, run as a user would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn demo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dtask-demo"))
}

#[test]
fn zip_writes_the_archive_of_the_given_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.txt");
    let b = dir.path().join("b.bin");
    std::fs::write(&a, b"alpha").unwrap();
    std::fs::write(&b, vec![7u8; 100_000]).unwrap();
    let out = dir.path().join("out.zip");
    let run = demo()
        .arg("zip")
        .arg(&a)
        .arg(&b)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    let mut content = Vec::new();
    archive.by_name("a.txt").unwrap().read_to_end(&mut content).unwrap();
    assert_eq!(content, b"alpha");
    content.clear();
    archive.by_name("b.bin").unwrap().read_to_end(&mut content).unwrap();
    assert_eq!(content, vec![7u8; 100_000]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("2 files"), "{stdout}");
}

#[test]
fn a_missing_input_is_a_clear_error_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.txt");
    let run = demo()
        .arg("zip")
        .arg(&missing)
        .arg("--output")
        .arg(dir.path().join("o.zip"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("cannot read") && stderr.contains("nope.txt"),
        "{stderr}"
    );
    assert!(!dir.path().join("o.zip").exists());
}

#[test]
fn a_directory_is_not_a_file_to_zip() {
    let dir = tempfile::tempdir().unwrap();
    let run = demo().arg("zip").arg(dir.path()).output().unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("not a regular file"));
}

#[test]
fn the_demo_command_zips_sample_files_and_lists_them() {
    let run = demo().arg("demo").output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("Archive contents") && stdout.contains("report.csv"),
        "{stdout}"
    );
}

/// Sends one HTTP/1.1 GET and returns the whole answer.
fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn the_default_command_serves_the_dashboard_until_sigterm() {
    let mut server = demo()
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let (lines, announced) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let line = announced
        .recv_timeout(Duration::from_secs(60))
        .expect("the server prints its dashboard URL");
    let url = line
        .strip_prefix("Dashboard: ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"));
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    assert!(!addr.ends_with(":0"), "the actual port is printed: {line}");

    let health = get(&addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let page = get(&addr, "/");
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("data-testid=\"file-input\""),
        "{page}"
    );

    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server stops within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    server.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "a clean exit after SIGTERM: {stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
}

#[test]
fn a_busy_address_is_a_one_line_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let run = demo().args(["serve", "--listen", &addr]).output().unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&addr) && stderr.contains("already in use"), "{stderr}");
}

/// Waits for the server's first line (its dashboard URL) and returns it.
fn announced(server: &mut std::process::Child) -> String {
    let stdout = server.stdout.take().unwrap();
    let (lines, first) = mpsc::channel();
    // Reads every line (a closed pipe would fail the server's next write).
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    first
        .recv_timeout(Duration::from_secs(60))
        .expect("the server prints its dashboard URL")
}

#[test]
fn listening_beyond_loopback_without_authentication_is_refused() {
    let run = demo()
        .args(["serve", "--in-memory", "--listen", "0.0.0.0:0"])
        .env_remove("DTASK_INSECURE_NO_AUTH")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "refused: a failing exit");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without authentication")
            && stderr.contains("DTASK_AUTH_JWT_SECRET")
            && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );

    // Told it is wanted, or given credentials to check, it serves.
    for extra in [
        vec!["--insecure-no-auth"],
        vec!["--auth-jwt-secret", "a-shared-secret-of-32-bytes-or-more"],
    ] {
        let mut server = demo()
            .args(["serve", "--in-memory", "--listen", "0.0.0.0:0"])
            .args(&extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let line = announced(&mut server);
        assert!(line.starts_with("Dashboard: http://127.0.0.1:"), "{extra:?}: {line}");
        let addr = line
            .trim_start_matches("Dashboard: http://")
            .trim_end_matches('/')
            .to_owned();
        let list = get(&addr, "/api/tasks");
        let expected = if extra[0] == "--insecure-no-auth" {
            "HTTP/1.1 200"
        } else {
            "HTTP/1.1 401"
        };
        assert!(list.starts_with(expected), "{extra:?}: {list}");
        server.kill().unwrap();
        server.wait().unwrap();
    }
}

#[test]
fn a_weak_jwt_secret_is_a_one_line_error() {
    let run = demo()
        .args([
            "serve",
            "--in-memory",
            "--listen",
            "127.0.0.1:0",
            "--auth-jwt-secret",
            "short",
        ])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("use at least 32 random bytes"), "{stderr}");
}

#[test]
fn a_bad_encryption_key_is_a_one_line_error_that_does_not_show_it() {
    let run = demo()
        .args(["worker", "--mode", "distributed"])
        .env("DTASK_ENCRYPTION_KEYS", "k1:c2hvcnQta2V5")
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("the key `k1` is 9 bytes long; keys are 32 random bytes"),
        "{stderr}"
    );
    assert!(!stderr.contains("c2hvcnQta2V5"), "the key shows: {stderr}");
}

#[test]
fn hash_api_key_prints_the_line_of_the_keys_file() {
    let run = demo().args(["hash-api-key", "k3y"]).output().unwrap();
    assert!(run.status.success());
    let hash = String::from_utf8(run.stdout).unwrap();
    // sha256("k3y"), by Python's hashlib.
    let expected = std::process::Command::new("python3")
        .args([
            "-c",
            "import hashlib; print('sha256:' + hashlib.sha256(b'k3y').hexdigest())",
        ])
        .output()
        .unwrap();
    assert_eq!(hash, String::from_utf8(expected.stdout).unwrap());
}

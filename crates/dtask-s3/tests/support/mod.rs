//! The S3 server the tests talk to.
//!
//! [`S3Server::shared`] uses the server at `DTASK_S3_ENDPOINT` (default
//! `http://127.0.0.1:9000`, where `scripts/s3-server start` puts one) when
//! something listens there, and otherwise starts a private `s3s-fs`.
//! [`S3Server::private`] always starts one, on a free port with a
//! temporary data directory, for tests that look inside that directory.
//! A server started here is killed when the value is dropped. When no
//! server can be had the test fails, naming the fix: it never skips.

#![allow(dead_code, unreachable_pub)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dtask_s3::S3Config;

/// How long a started server may take to listen.
const START_PATIENCE: Duration = Duration::from_secs(15);

/// A reachable S3 server.
pub struct S3Server {
    endpoint: String,
    access_key: String,
    secret_key: String,
    data_dir: Option<PathBuf>,
    child: Option<Child>,
    _temp: Option<tempfile::TempDir>,
}

impl S3Server {
    /// The server at `DTASK_S3_ENDPOINT` if one listens, else a private one.
    pub fn shared() -> Self {
        let endpoint = std::env::var("DTASK_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".to_owned());
        if listens(&endpoint) {
            return Self {
                endpoint,
                access_key: env_or("DTASK_S3_ACCESS_KEY", "minioadmin"),
                secret_key: env_or("DTASK_S3_SECRET_KEY", "minioadmin"),
                data_dir: None,
                child: None,
                _temp: None,
            };
        }
        Self::private()
    }

    /// A fresh `s3s-fs` of this test's own.
    pub fn private() -> Self {
        let binary =
            s3s_fs_binary().unwrap_or_else(|| panic!("s3s-fs is not installed: run scripts/s3-server install"));
        let temp = tempfile::tempdir().expect("a temporary directory for s3s-fs");
        let data_dir = temp.path().join("data");
        std::fs::create_dir(&data_dir).expect("the s3s-fs data directory");
        let port = free_port();
        let (access_key, secret_key) = ("minioadmin".to_owned(), "minioadmin".to_owned());
        let log = std::fs::File::create(temp.path().join("s3s-fs.log")).expect("the s3s-fs log file");
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} failed: {e}", binary.display()));
        let mut server = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            access_key,
            secret_key,
            data_dir: Some(data_dir),
            child: Some(child),
            _temp: Some(temp),
        };
        server.wait_until_listening();
        server
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + START_PATIENCE;
        while !listens(&self.endpoint) {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("s3s-fs exited at start ({status}); see {}", self.log_path().display());
            }
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen on {} within {START_PATIENCE:?}",
                self.endpoint
            );
            // No event tells when a child process starts listening: poll.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_path(&self) -> PathBuf {
        self._temp
            .as_ref()
            .map(|t| t.path().join("s3s-fs.log"))
            .unwrap_or_default()
    }

    /// The server's URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A configuration for this server.
    pub fn config(&self) -> S3Config {
        S3Config::endpoint(&self.endpoint, &self.access_key, &self.secret_key)
    }

    /// The data directory of a server started here.
    pub fn data_dir(&self) -> &Path {
        self.data_dir
            .as_deref()
            .expect("only a private server has a known data directory")
    }

    /// The files s3s-fs keeps for multipart uploads not completed nor
    /// aborted (`.upload-{id}.json`, `.upload_id-{id}.part-{n}`, and the
    /// per-upload metadata).
    pub fn pending_upload_files(&self) -> Vec<String> {
        std::fs::read_dir(self.data_dir())
            .expect("the data directory")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with(".upload") || name.contains(".upload-"))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Whether something accepts TCP connections at the endpoint's address.
fn listens(endpoint: &str) -> bool {
    let Ok(url) = url::Url::parse(endpoint) else {
        panic!("DTASK_S3_ENDPOINT `{endpoint}` is not a URL");
    };
    let addresses = url.socket_addrs(|| Some(80)).unwrap_or_default();
    addresses
        .iter()
        .any(|address| TcpStream::connect_timeout(address, Duration::from_millis(500)).is_ok())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn s3s_fs_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("S3S_FS") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("s3s-fs"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin").join("s3s-fs"));
    on_path.chain(cargo_home).find(|candidate| candidate.is_file())
}

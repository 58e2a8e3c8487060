//! The demo binary, run as a user would.

use std::io::Read;
use std::process::Command;

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
fn the_default_command_runs_the_demo() {
    let run = demo().output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("Archive contents") && stdout.contains("report.csv"),
        "{stdout}"
    );
}

//! CreateZipFromFiles end to end in InProcess mode: archives checked byte
//! for byte, hostile names, compensation and cancellation.

use std::collections::BTreeMap;
use std::io::Read;

use dtask::fs::LocalFileSystemStore;
use dtask::infra::ObjectStoreExt;
use dtask::prelude::*;
use dtask::testing::{Fault, TestHost};
use dtask::{EventKind, SagaSnapshot, StepStatus};
use dtask_demo::{CreateZipFromFiles, CreateZipRequest};
use futures::StreamExt;

/// Deterministic bytes that deflate cannot shrink much.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn request(files: &[(&str, Vec<u8>)]) -> CreateZipRequest {
    CreateZipRequest {
        files: Files::from_files(
            files
                .iter()
                .map(|(name, bytes)| IncomingFile::from_bytes(*name, bytes.clone()))
                .collect(),
        ),
        output_file_name: Some("bundle".into()),
    }
}

async fn read_archive(host: &TestHost, bucket: &str, key: &str) -> BTreeMap<String, Vec<u8>> {
    let bytes = host.storage().get_bytes(bucket, key).await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut entries = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        assert_eq!(entry.compression(), zip::CompressionMethod::Deflated);
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        entries.insert(entry.name().unwrap().into_owned(), content);
    }
    entries
}

async fn objects_of(host: &TestHost, bucket: &str, task_id: TaskId) -> usize {
    host.storage().list(bucket, &task_id.to_string()).await.unwrap().len()
}

#[tokio::test]
async fn files_of_every_size_and_name_are_zipped_byte_for_byte() {
    let host = TestHost::new(CreateZipFromFiles);
    let big = noise(50 * 1024 * 1024, 7);
    let files = [
        ("empty.txt", Vec::new()),
        ("small.txt", b"hello, zip".to_vec()),
        ("big.bin", big),
        ("résumé ✓ 日本語.txt", "non-ASCII".as_bytes().to_vec()),
        ("../../etc/passwd", b"not really".to_vec()),
        (r"C:\Windows\evil.dll", b"MZ".to_vec()),
        ("/abs/path.txt", b"absolute".to_vec()),
        ("dup.txt", b"first".to_vec()),
        ("dup.txt", b"second".to_vec()),
        ("DUP.txt", b"third".to_vec()),
    ];
    let handle = host.submit::<CreateZipFromFiles>(request(&files)).await.unwrap();
    let outcome = handle.wait().await.unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);
    let response = outcome.response.unwrap();
    assert_eq!(response.bucket, "processed-files");
    assert_eq!(response.file_name, "bundle.zip");
    assert_eq!(response.entries, files.len() as u32);
    assert!(response.key.starts_with(&handle.id().to_string()));
    let stored = host.storage().head(&response.bucket, &response.key).await.unwrap();
    assert_eq!(stored.size, response.size);

    let entries = read_archive(&host, &response.bucket, &response.key).await;
    let expected_names = [
        "empty.txt",
        "small.txt",
        "big.bin",
        "résumé ✓ 日本語.txt",
        "etc/passwd",
        "Windows/evil.dll",
        "abs/path.txt",
        "dup.txt",
        "dup (1).txt",
        "DUP (2).txt",
    ];
    for ((_, content), name) in files.iter().zip(expected_names) {
        assert_eq!(entries.get(name).map(Vec::len), Some(content.len()), "entry {name}");
        assert!(entries[name] == *content, "entry {name} differs");
    }
    assert_eq!(entries.len(), files.len());
    assert!(
        entries
            .keys()
            .all(|n| !n.starts_with('/') && !n.split('/').any(|s| s == ".."))
    );
}

#[tokio::test]
async fn zipping_reports_the_bytes_zipped_so_far() {
    let host = TestHost::new(CreateZipFromFiles);
    let handle = host
        .submit::<CreateZipFromFiles>(request(&[("data.bin", noise(8 * 1024 * 1024, 3))]))
        .await
        .unwrap();
    handle.wait().await.unwrap();
    let reports: Vec<String> = host
        .events(handle.id())
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::StepProgress { step, message, .. } if step.name == "CreateZipArchive" => message,
            _ => None,
        })
        .collect();
    assert!(!reports.is_empty());
    assert!(reports.iter().all(|m| m.contains("zipped")), "{reports:?}");
}

#[tokio::test]
async fn a_failure_after_the_upload_deletes_the_uploaded_sources() {
    let host = TestHost::new(CreateZipFromFiles);
    host.inject("UploadZip", Fault::FailPermanently);
    let handle = host
        .submit::<CreateZipFromFiles>(request(&[("a.txt", b"a".to_vec()), ("b.txt", b"b".to_vec())]))
        .await
        .unwrap();
    let outcome = handle.wait().await.unwrap();

    assert_eq!(outcome.status(), TaskStatus::Compensated);
    assert_eq!(objects_of(&host, "incoming-files", handle.id()).await, 0);
    assert_eq!(objects_of(&host, "processed-files", handle.id()).await, 0);
    let statuses: Vec<_> = outcome.progress.steps.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [StepStatus::Compensated, StepStatus::Compensated, StepStatus::Failed]
    );
}

#[tokio::test]
async fn cancelling_after_the_archive_exists_deletes_it_and_the_sources() {
    let host = TestHost::new(CreateZipFromFiles);
    host.inject("UploadZip", Fault::Hang);
    let handle = host
        .submit::<CreateZipFromFiles>(request(&[("a.txt", noise(1 << 20, 5))]))
        .await
        .unwrap();
    let mut stream = handle.stream().await.unwrap();
    while let Some(progress) = stream.next().await {
        if progress.steps[2].status == StepStatus::Running {
            break;
        }
    }
    let stored = host
        .host()
        .infrastructure()
        .state
        .load(handle.id())
        .await
        .unwrap()
        .unwrap();
    let snapshot: SagaSnapshot<CreateZipFromFiles> = stored.payload.decode().unwrap();
    let archive = snapshot.data.create_zip_archive.unwrap().archive.path;
    assert!(archive.exists(), "the archive was written before the cancellation");

    handle.cancel().await.unwrap();
    let outcome = handle.wait().await.unwrap();
    assert_eq!(outcome.status(), TaskStatus::Cancelled);
    assert!(!archive.exists(), "the archive is deleted");
    assert_eq!(objects_of(&host, "incoming-files", handle.id()).await, 0);
    assert_eq!(objects_of(&host, "processed-files", handle.id()).await, 0);
}

#[tokio::test]
async fn a_failing_zip_attempt_is_retried() {
    let host = TestHost::new(CreateZipFromFiles);
    host.inject("CreateZipArchive", Fault::FailTimes(1));
    let outcome = host
        .run::<CreateZipFromFiles>(request(&[("x.txt", b"x".to_vec())]))
        .await
        .unwrap();
    assert_eq!(outcome.status(), TaskStatus::Completed);
    assert_eq!(outcome.progress.steps[1].attempts, 2);
}

#[tokio::test]
async fn runs_on_the_local_file_system_store_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFileSystemStore::new(dir.path()).unwrap();
    let host = TestHost::with(|b| b.register(CreateZipFromFiles).storage(store));
    let content = noise(300_000, 11);
    let outcome = host
        .run::<CreateZipFromFiles>(request(&[("doc.bin", content.clone())]))
        .await
        .unwrap();
    let response = outcome.response.unwrap();
    let on_disk = dir.path().join(&response.bucket).join(&response.key);
    assert!(on_disk.is_file(), "{} is on disk", on_disk.display());
    let entries = read_archive(&host, &response.bucket, &response.key).await;
    assert!(entries["doc.bin"] == content);
}

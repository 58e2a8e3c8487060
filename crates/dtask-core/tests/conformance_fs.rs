//! The object store conformance suite against [`LocalFileSystemStore`].

use dtask_core::conformance;
use dtask_core::fs::LocalFileSystemStore;

#[tokio::test]
async fn local_file_system_store() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = LocalFileSystemStore::new(dir.path().join("objects")).expect("the store");
    conformance::storage::run_all(&store).await;
}

//! The conformance suite against the in-memory (InProcess) backends.

use std::sync::Arc;

use dtask_core::codec::NestedEncoding;
use dtask_core::conformance;
use dtask_core::memory::{
    MemoryIdempotencyStore, MemoryLock, MemoryObjectStore, MemoryProgressTracker, MemoryQueue, MemoryStateStore,
    MemoryWorkerRegistry,
};
use dtask_core::{Codec, Format, JsonSerializer, MessagePackSerializer, ProtobufSerializer};

#[tokio::test]
async fn memory_object_store() {
    conformance::storage::run_all(&MemoryObjectStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_queue() {
    let queue = MemoryQueue::new();
    conformance::queue::run_all(Arc::new(queue.clone()), Arc::new(queue)).await;
}

#[tokio::test]
async fn memory_queue_depths() {
    let queue = MemoryQueue::new();
    conformance::depths::run_all(&queue, &queue, &queue).await;
}

#[tokio::test]
async fn memory_dead_letters() {
    let queue = Arc::new(MemoryQueue::new());
    conformance::dead_letters::run_all(queue.clone(), queue.clone(), queue).await;
}

#[tokio::test]
async fn memory_queue_back_pressure() {
    let queue = MemoryQueue::with_capacity(4);
    conformance::queue::back_pressure(Arc::new(queue.clone()), Arc::new(queue), 4).await;
}

#[tokio::test]
async fn memory_lock() {
    conformance::lock::run_all(&MemoryLock::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_progress_tracker() {
    conformance::progress::run_all(&MemoryProgressTracker::new()).await;
}

#[tokio::test]
async fn memory_cancellation_feed() {
    let tracker = MemoryProgressTracker::new();
    conformance::progress::run_feed(&tracker, &tracker).await;
}

#[tokio::test]
async fn memory_worker_registry() {
    conformance::workers::run_all(&MemoryWorkerRegistry::new()).await;
}

#[tokio::test]
async fn memory_idempotency_store() {
    conformance::idempotency::run_all(&MemoryIdempotencyStore::new()).await;
}

#[tokio::test]
async fn memory_state_store() {
    conformance::state::run_all(&MemoryStateStore::new()).await;
}

#[test]
fn json_serializer() {
    conformance::serializer::run_all(&JsonSerializer);
}

#[test]
fn message_pack_serializer() {
    conformance::serializer::run_all(&MessagePackSerializer);
}

#[test]
fn protobuf_serializer_with_json_nested_values() {
    conformance::serializer::run_all(&ProtobufSerializer::default());
}

#[test]
fn protobuf_serializer_with_message_pack_nested_values() {
    conformance::serializer::run_all(&ProtobufSerializer::with_nested(NestedEncoding::MessagePack));
}

#[test]
fn codec_in_every_format() {
    for format in Format::ALL {
        conformance::serializer::run_all(&Codec::new(format));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_memory_queue() {
    let queue = dtask_core::infra::NamespacedQueue::new("ns", MemoryQueue::new());
    conformance::queue::run_all(Arc::new(queue.clone()), Arc::new(queue.clone())).await;
    conformance::depths::run_all(&queue, &queue, &queue).await;
    let queue = Arc::new(queue);
    conformance::dead_letters::run_all(queue.clone(), queue.clone(), queue).await;
}

#[tokio::test]
async fn memory_task_history() {
    conformance::history::run_all(&dtask_core::memory::MemoryTaskHistory::new()).await;
}

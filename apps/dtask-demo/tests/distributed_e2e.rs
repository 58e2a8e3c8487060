//! Distributed mode end to end with separate OS processes: one `api`, two
//! `worker`s, the real broker (RabbitMQ over AMQP 0-9-1 or 1.0, Redis
//! Streams, or PostgreSQL alone, with Redis and RabbitMQ pointed at closed
//! ports), Redis and an S3 server. Twenty zips checked byte for byte; a
//! cancellation across processes that leaves no object behind; a worker
//! killed with SIGKILL in the middle of CreateZipArchive whose task
//! completes on another worker, resumed from its snapshot. The Redis Streams run seals its messages and
//! saga states (`DTASK_ENCRYPTION_KEYS`), checked raw in Redis.

mod cluster;

use cluster::scenario::{KEYS, run_cluster};
use cluster::{Broker, Cluster};

// Between them the two runs use every serializer, and the API and the
// workers of a run write different ones.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_on_rabbitmq_protobuf_hand_offs_json_snapshots() {
    let cluster = Cluster::new(Broker::RabbitMq).serializers("protobuf", "json");
    run_cluster(&cluster, false, false).await;
    cluster.remove_queue().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_on_amqp10_msgpack_hand_offs_json_snapshots() {
    let cluster = Cluster::new(Broker::Amqp10).serializers("msgpack", "json");
    run_cluster(&cluster, false, false).await;
    cluster.remove_queue().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_only_cluster_json_hand_offs_msgpack_snapshots() {
    let cluster = Cluster::new(Broker::Postgres)
        .serializers("json", "msgpack")
        .env("DTASK_HISTORY", "postgres");
    run_cluster(&cluster, false, true).await;
    cluster.remove_queue().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_cluster_on_redis_streams_msgpack_hand_offs_protobuf_snapshots() {
    let cluster = Cluster::new(Broker::RedisStreams)
        .serializers("msgpack", "protobuf")
        .env("DTASK_ENCRYPTION_KEYS", KEYS);
    run_cluster(&cluster, true, false).await;
    cluster.remove_queue().await;
}

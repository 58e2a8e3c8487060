//! Reconnection: a TCP proxy between dtask and RabbitMQ cuts the
//! connection while a delivery is held and while publishes are in flight;
//! the publisher and the delivery stream carry on, no publish is reported
//! done without the broker's `accepted`, and nothing accepted is lost.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use dtask_amqp10::{Amqp10Config, Amqp10Error};
use dtask_core::conformance::FaultProxy;
use dtask_core::infra::{QueueConsumer, QueuePublisher};
use futures::StreamExt;
use support::{connect_with, delete_queues, message, unique, within};

/// The broker behind the proxy.
fn broker() -> SocketAddr {
    let config = support::config();
    format!("{}:{}", config.host, config.port)
        .parse()
        .expect("the test broker is an IP address and port")
}

fn through(proxy: &FaultProxy) -> Amqp10Config {
    Amqp10Config::parse(&format!("amqp://guest:guest@{}", proxy.addr()))
        .expect("a proxy URL")
        .with_reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_consuming_survive_a_cut_connection() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("dtask_amqp10=debug")
        .try_init();
    let queue = unique("reconnect");
    let proxy = FaultProxy::start(broker()).await;
    let amqp = connect_with(through(&proxy)).await;
    let impatient = connect_with(through(&proxy).with_reconnect_timeout(Duration::from_millis(300))).await;
    let mut stream = amqp.consume(&queue).await.expect("consume");
    let (first, second) = (message(1), message(2));
    amqp.publish(&queue, first.clone())
        .await
        .expect("publish before the cut");
    let held = within("the first delivery", stream.next()).await.unwrap().unwrap();
    assert_eq!(held.message().id, first.id);

    proxy.cut();
    let error = within("a failed ping", async {
        loop {
            match amqp.ping().await {
                Err(error) => break error,
                Ok(()) => tokio::task::yield_now().await,
            }
        }
    })
    .await;
    println!("ping during the outage: {error}");
    let error = impatient
        .publish(&queue, message(3))
        .await
        .expect_err("published through a cut proxy");
    assert!(error.to_string().contains("is unreachable"), "{error}");
    // A publish meanwhile waits for the reconnection.
    let publishing = tokio::spawn({
        let (amqp, queue, second) = (amqp.clone(), queue.clone(), second.clone());
        async move { amqp.publish(&queue, second).await }
    });
    proxy.restore();
    within("the publish across the cut", publishing)
        .await
        .unwrap()
        .expect("published after the reconnection");

    // Acking on the lost link fails harmlessly: the message comes back.
    let error = held.ack().await.expect_err("an ack on a lost link succeeded");
    let source = std::error::Error::source(&error).and_then(|s| s.downcast_ref::<Amqp10Error>());
    assert!(matches!(source, Some(Amqp10Error::DeliveryLinkLost)), "{error:?}");

    // The same stream delivers both: the first again (counted), the second.
    let mut counts = HashMap::new();
    while counts.len() < 2 {
        let delivery = within("a delivery after the cut", stream.next())
            .await
            .unwrap()
            .unwrap();
        let id = delivery.message().id;
        assert!(id == first.id || id == second.id, "a foreign message");
        assert!(
            counts.insert(id, delivery.delivery_count()).is_none(),
            "delivered twice"
        );
        delivery.ack().await.expect("ack after the reconnection");
    }
    assert_eq!(counts[&second.id], 1, "the second message's first delivery");
    assert!(
        counts[&first.id] >= 2,
        "the held message counts its redelivery: {counts:?}"
    );
    amqp.ping().await.expect("ping after the reconnection");
    drop(stream);
    delete_queues(&[queue]).await;
}

/// Publishes in flight when the connection is cut mid-frame: each either
/// fails or succeeds, and every one reported done is in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_publish_is_reported_done_without_the_brokers_accepted() {
    const N: usize = 60;
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("dtask_amqp10=debug")
        .try_init();
    let queue = unique("in-flight");
    let proxy = FaultProxy::start(broker()).await;
    let amqp = connect_with(through(&proxy).with_reconnect_timeout(Duration::from_secs(20))).await;
    // Declares the queue, so the cut falls among the transfers.
    amqp.publish(&queue, message(0)).await.expect("first publish");
    let sent: Vec<_> = (1..=N).map(message).collect();
    proxy.cut_after_client_bytes(4_000);
    let restore = async {
        proxy.until_cuts(1).await;
        proxy.restore();
    };
    let publishes = futures::future::join_all(sent.iter().map(|m| amqp.publish(&queue, m.clone())));
    let (results, ()) = within("the publishes across the cut", async {
        tokio::join!(publishes, restore)
    })
    .await;
    let done: HashSet<_> = sent
        .iter()
        .zip(&results)
        .filter(|(_, result)| result.is_ok())
        .map(|(m, _)| m.id)
        .collect();
    println!("{} of {N} publishes reported done across the cut", done.len());

    let mut stream = amqp.consume(&queue).await.expect("consume");
    let mut seen = HashSet::new();
    while !done.is_subset(&seen) {
        let delivery = within("the published messages", stream.next()).await.unwrap().unwrap();
        seen.insert(delivery.message().id);
        delivery.ack().await.expect("ack");
    }
    drop(stream);
    delete_queues(&[queue]).await;
}

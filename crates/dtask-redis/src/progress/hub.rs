//! One pub/sub connection per tracker, shared by all its streams.
//!
//! A dispatcher task owns the connection's message stream and routes each
//! published snapshot to the streams following its task. Channels are
//! subscribed when their first stream starts and unsubscribed when their
//! last one ends. When the connection drops, the dispatcher reconnects
//! (with a capped backoff), subscribes every followed channel again and
//! tells each stream to re-read its task's snapshot, since changes
//! published while it was away are lost.
//!
//! Invariant, kept by doing every change of it under the `sink` lock: a
//! channel is a key of `routes` exactly when the server has (or, while
//! reconnecting, will have) it subscribed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dtask_core::progress::TaskProgress;
use dtask_core::{Error, Result};
use futures::StreamExt;
use redis::aio::{PubSub, PubSubSink, PubSubStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use crate::conn::{PubSubNodes, Timeouts, redis_error, unreachable};

/// What a stream receives.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// A published snapshot, decoded once for all the task's streams.
    Progress(Arc<TaskProgress>),
    /// The connection was lost and is back: re-read the task.
    Resync,
}

type Routes = HashMap<String, Vec<UnboundedSender<Event>>>;

struct Shared {
    /// Where to connect: the server, or any node of a cluster (tried in
    /// turn after a failure).
    nodes: PubSubNodes,
    /// The node connected to (or last tried), an index into `nodes`.
    node: AtomicUsize,
    timeouts: Timeouts,
    routes: Mutex<Routes>,
    /// `None` while reconnecting.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
}

impl Shared {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `event` to the streams of `channel`, forgetting closed ones
    /// (the channel itself is dropped by the last stream's release).
    fn route(&self, channel: &str, event: &Event) {
        if let Some(senders) = self.routes().get_mut(channel) {
            senders.retain(|sender| sender.send(event.clone()).is_ok());
        }
    }

    /// Unsubscribes `channel` if none of its streams is open any more.
    async fn release(&self, channel: String) {
        let mut sink = self.sink.lock().await;
        let unused = {
            let mut routes = self.routes();
            let unused = routes.get_mut(&channel).is_some_and(|senders| {
                senders.retain(|sender| !sender.is_closed());
                senders.is_empty()
            });
            if unused {
                routes.remove(&channel);
            }
            unused
        };
        if let (true, Some(sink)) = (unused, sink.as_mut()) {
            let done = tokio::time::timeout(self.timeouts.response, sink.unsubscribe(&channel)).await;
            if !matches!(done, Ok(Ok(()))) {
                tracing::debug!(%channel, "unsubscribing failed; the dispatcher ignores its messages");
            }
        }
    }

    /// Opens a new pub/sub connection, subscribes every followed channel
    /// and tells their streams to re-read; retries until it succeeds.
    async fn reconnect(&self) -> PubSubStream {
        *self.sink.lock().await = None;
        let mut pause = Duration::from_millis(50);
        loop {
            match self.resubscribe().await {
                Ok(stream) => {
                    for senders in self.routes().values_mut() {
                        senders.retain(|sender| sender.send(Event::Resync).is_ok());
                    }
                    tracing::info!(url = %self.url(), "progress pub/sub connection restored");
                    return stream;
                }
                Err(error) => {
                    tracing::warn!(url = %self.url(), %error, ?pause, "progress pub/sub reconnection failed; retrying");
                    // The next node of a cluster (the same server otherwise).
                    self.node.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// The redacted URL of the node connected to (or tried next).
    fn url(&self) -> &str {
        let nodes = &self.nodes.nodes;
        &nodes[self.node.load(Ordering::Relaxed) % nodes.len()].1
    }

    async fn resubscribe(&self) -> Result<PubSubStream> {
        let nodes = &self.nodes.nodes;
        let (client, url) = &nodes[self.node.load(Ordering::Relaxed) % nodes.len()];
        let (mut sink, stream) = open(client, url, self.nodes.cluster, self.timeouts).await?.split();
        let mut slot = self.sink.lock().await;
        let channels: Vec<String> = self.routes().keys().cloned().collect();
        if !channels.is_empty() {
            subscribe(&mut sink, &channels, self.timeouts.response).await?;
        }
        *slot = Some(sink);
        Ok(stream)
    }
}

/// A pub/sub connection to the node of `client`. A cluster's node must
/// first say that the cluster is ok: one just restarted answers before its
/// links to the other nodes are up, and what they publish meanwhile would
/// not reach it (nor would a resync tell of it).
async fn open(client: &redis::Client, url: &str, cluster: bool, timeouts: Timeouts) -> Result<PubSub> {
    let opening = async {
        if cluster {
            let mut connection = client.get_multiplexed_async_connection().await?;
            let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(&mut connection).await?;
            if !info.contains("cluster_state:ok") {
                return Ok(None);
            }
        }
        client.get_async_pubsub().await.map(Some)
    };
    match tokio::time::timeout(timeouts.connect, opening).await {
        Ok(Ok(Some(pubsub))) => Ok(pubsub),
        Ok(Ok(None)) => Err(Error::backend(
            crate::conn::BACKEND,
            format!("the Redis Cluster node at {url} does not say cluster_state:ok yet"),
        )),
        Ok(Err(error)) => Err(unreachable(url, Some(error), timeouts.connect)),
        Err(_) => Err(unreachable(url, None, timeouts.connect)),
    }
}

async fn subscribe(sink: &mut PubSubSink, channels: &[String], timeout: Duration) -> Result<()> {
    match tokio::time::timeout(timeout, sink.subscribe(channels)).await {
        Ok(result) => result.map_err(redis_error),
        Err(_) => Err(Error::backend(
            crate::conn::BACKEND,
            format!("SUBSCRIBE got no answer within {timeout:?}"),
        )),
    }
}

/// Routes published snapshots until the tracker is dropped (which aborts
/// it), reconnecting whenever the connection drops.
async fn dispatch(shared: Arc<Shared>, mut stream: PubSubStream) {
    loop {
        while let Some(message) = stream.next().await {
            let channel = message.get_channel_name();
            match serde_json::from_slice::<TaskProgress>(message.get_payload_bytes()) {
                Ok(progress) => shared.route(channel, &Event::Progress(Arc::new(progress))),
                Err(error) => tracing::warn!(%channel, %error, "undecodable progress message; ignored"),
            }
        }
        tracing::warn!(url = %shared.url(), "progress pub/sub connection lost; reconnecting");
        stream = shared.reconnect().await;
    }
}

/// The pub/sub side of one tracker.
pub(crate) struct Hub {
    shared: Arc<Shared>,
    dispatcher: JoinHandle<()>,
}

impl Hub {
    /// Opens the pub/sub connection (to the first of `nodes` that answers)
    /// and starts the dispatcher.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the URL when no node answers.
    pub(crate) async fn connect(nodes: PubSubNodes, timeouts: Timeouts) -> Result<Self> {
        let mut opened = None;
        let mut failure = None;
        for (index, (client, url)) in nodes.nodes.iter().enumerate() {
            match open(client, url, nodes.cluster, timeouts).await {
                Ok(pubsub) => {
                    opened = Some((index, pubsub));
                    break;
                }
                Err(error) => failure = Some(error),
            }
        }
        let Some((node, pubsub)) = opened else {
            return Err(failure.unwrap_or_else(|| Error::invalid("redis url", "no URL given")));
        };
        let (sink, stream) = pubsub.split();
        let shared = Arc::new(Shared {
            nodes,
            node: AtomicUsize::new(node),
            timeouts,
            routes: Mutex::new(HashMap::new()),
            sink: tokio::sync::Mutex::new(Some(sink)),
        });
        let dispatcher = tokio::spawn(dispatch(Arc::clone(&shared), stream));
        Ok(Self { shared, dispatcher })
    }

    /// Starts receiving what is published on `channel`; the subscription
    /// is confirmed by the server when this returns (or will be made by
    /// the reconnection under way, which then sends [`Event::Resync`]).
    ///
    /// # Errors
    /// [`Error::Backend`] when the server refuses or does not answer.
    pub(crate) async fn subscribe(&self, channel: String) -> Result<Subscription> {
        let (sender, receiver) = unbounded_channel();
        let mut sink = self.shared.sink.lock().await;
        let first = {
            let mut routes = self.shared.routes();
            let first = !routes.contains_key(&channel);
            routes.entry(channel.clone()).or_default().push(sender);
            first
        };
        if let (true, Some(sink)) = (first, sink.as_mut()) {
            let subscribed = subscribe(sink, std::slice::from_ref(&channel), self.shared.timeouts.response).await;
            if let Err(error) = subscribed {
                self.shared.routes().remove(&channel);
                return Err(error);
            }
        }
        drop(sink);
        Ok(Subscription {
            receiver,
            _release: Release {
                shared: Arc::clone(&self.shared),
                channel,
            },
        })
    }
}

impl Drop for Hub {
    /// Stops the dispatcher and ends every open stream.
    fn drop(&mut self) {
        self.dispatcher.abort();
        self.shared.routes().clear();
    }
}

/// The events of one channel for one stream; unsubscribes (in the
/// background) when dropped and no other stream follows the channel.
pub(crate) struct Subscription {
    pub(crate) receiver: UnboundedReceiver<Event>,
    _release: Release,
}

struct Release {
    shared: Arc<Shared>,
    channel: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        let channel = std::mem::take(&mut self.channel);
        runtime.spawn(async move { shared.release(channel).await });
    }
}

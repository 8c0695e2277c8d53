//! Cluster events: typed domain events published on one game server and
//! handled on every game server, over Redis pub/sub.
//!
//! Pub/sub, not streams: an event here is "tell the players online now"
//! (a reset happened, an in-game event starts). A server that is down has
//! no players to tell, and a server that comes back must not replay an
//! hour of old notices. What must not be lost is a job, and jobs live in
//! the job store. So: delivery is at most once per running server; an
//! event published while a server is down, or while its pub/sub connection
//! is reconnecting, is lost for that server.
//!
//! On a Redis Cluster the channel is sharded (`SPUBLISH`/`SSUBSCRIBE`):
//! its `{jobs}` hash tag puts it on one shard, every game server
//! subscribes there, and a message reaches every subscriber without being
//! broadcast over the cluster bus (which classic `PUBLISH` on a cluster
//! does, to every node). The redis crate's cluster connection resubscribes
//! by itself when that shard fails over or its slot moves; what is
//! published in between is lost, as on one Redis.
//!
//! Handlers are registered by event type before the listener starts. Each
//! received event is handed, per handler, to the bounded [`WorkQueue`], so
//! handlers never run on the request path nor on the listener, and a
//! failing or panicking handler is logged and does not affect the others.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use gamemesh_node::redis_connection::PubSubClient;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::queue::WorkQueue;
use crate::runner::BoxError;
use crate::store::{JobStore, PREFIX};
use crate::JobsError;

/// A domain event: a serializable value with a stable type name.
pub trait Event: Serialize + DeserializeOwned + Send + 'static {
    /// The name handlers are registered under (stable across versions).
    const TYPE: &'static str;
}

/// What travels on the channel.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// [`Event::TYPE`].
    #[serde(rename = "type")]
    kind: String,
    /// The node that published it (for logs).
    origin: u64,
    /// The event itself.
    payload: serde_json::Value,
}

type ErasedHandler =
    Arc<dyn Fn(serde_json::Value) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync>;

/// Handlers by event type, filled before [`EventBus::listen`].
#[derive(Default)]
pub struct EventHandlers {
    /// type -> (handler name, handler).
    by_type: HashMap<&'static str, Vec<(String, ErasedHandler)>>,
}

impl EventHandlers {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` (named `name` in logs) for every event of type `E`.
    pub fn on<E, F, Fut>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        E: Event,
        F: Fn(E) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let handler: ErasedHandler = Arc::new(move |value| {
            let f = f.clone();
            async move {
                let event: E = serde_json::from_value(value)?;
                f(event).await
            }
            .boxed()
        });
        self.by_type
            .entry(E::TYPE)
            .or_default()
            .push((name.into(), handler));
        self
    }
}

/// Publishes events and, once listening, hands received ones to handlers.
#[derive(Clone)]
pub struct EventBus {
    /// Where events are published (the job store's connection).
    store: JobStore,
    /// The channel name.
    channel: String,
    /// This node (in the envelope).
    node_id: u64,
    /// True while subscribed (tests wait for it before publishing).
    subscribed: watch::Receiver<bool>,
    /// Its sender, taken by `listen`.
    subscribed_tx: Arc<watch::Sender<bool>>,
}

impl EventBus {
    /// A bus on `store`'s Redis for node `node_id`.
    pub fn new(store: JobStore, node_id: u64) -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            store,
            channel: format!("{PREFIX}events"),
            node_id,
            subscribed: rx,
            subscribed_tx: Arc::new(tx),
        }
    }

    /// Publishes `event` to every listening server (this one included).
    /// Returns how many servers were listening.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<usize, JobsError> {
        let envelope = Envelope {
            kind: E::TYPE.to_string(),
            origin: self.node_id,
            payload: serde_json::to_value(event)?,
        };
        let body = serde_json::to_string(&envelope)?;
        let mut conn = self.store.connection();
        let channel = self.channel.clone();
        // Sharded on a cluster: the channel's shard alone serves it.
        let publish = if conn.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let n: usize = tokio::time::timeout(
            self.store.timeout(),
            redis::cmd(publish)
                .arg(channel)
                .arg(body)
                .query_async(&mut conn),
        )
        .await
        .map_err(|_| JobsError::Timeout(self.store.timeout()))??;
        Ok(n)
    }

    /// Waits until the listener is subscribed.
    pub async fn wait_subscribed(&self) {
        let mut rx = self.subscribed.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Starts the listener on `tracker`: it subscribes (again after every
    /// lost connection, with a short pause, and on the new primary after
    /// every failover the store's source reports) until `shutdown`, and
    /// queues each handler of each received event on `queue`.
    pub fn listen(
        &self,
        handlers: EventHandlers,
        queue: WorkQueue,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) {
        let source = self.store.source().clone();
        let channel = self.channel.clone();
        let subscribed = self.subscribed_tx.clone();
        let handlers = Arc::new(handlers);
        let mut changes = source.primary_changes();
        tracker.spawn(async move {
            let mut logged_down = false;
            while !shutdown.is_cancelled() {
                // Marked seen before asking for the client: a switch after
                // this point makes us subscribe again, never miss it.
                if let Some(c) = changes.as_mut() {
                    c.borrow_and_update();
                }
                let client = source.client();
                let mut messages = match tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = subscribe(&client, &channel) => r,
                } {
                    Ok(p) => p,
                    Err(e) => {
                        if !logged_down {
                            warn!("Event listener cannot subscribe ({e}); events are missed until it can");
                            logged_down = true;
                        }
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                        }
                    }
                };
                if logged_down {
                    info!("Event listener subscribed again");
                    logged_down = false;
                }
                let _ = subscribed.send(true);
                loop {
                    let msg = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = primary_moved(&mut changes) => {
                            info!("Redis primary moved; event listener subscribing on the new one");
                            break;
                        }
                        m = messages.next() => m,
                    };
                    let Some(msg) = msg else {
                        warn!("Event listener lost its Redis connection; subscribing again");
                        break;
                    };
                    dispatch(&handlers, &queue, &msg).await;
                }
                let _ = subscribed.send(false);
            }
        });
    }
}

/// Resolves when the primary moves; never for a source whose primary
/// does not (or whose sender is gone).
async fn primary_moved(changes: &mut Option<watch::Receiver<u64>>) {
    if let Some(c) = changes {
        if c.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// Subscribes to `channel` and returns its messages' payloads; the
/// stream ends when the connection is lost.
async fn subscribe(
    client: &PubSubClient,
    channel: &str,
) -> Result<BoxStream<'static, Vec<u8>>, redis::RedisError> {
    match client {
        PubSubClient::Single(client) => {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok(pubsub
                .into_on_message()
                .map(|m| m.get_payload_bytes().to_vec())
                .boxed())
        }
        PubSubClient::Cluster(client) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let config = redis::cluster::ClusterConfig::new().set_push_sender(tx);
            let mut conn = client.get_async_connection_with_config(config).await?;
            conn.ssubscribe(channel).await?;
            // The connection lives as long as the stream: dropping it
            // would end the subscription.
            Ok(
                futures::stream::unfold((conn, rx), |(conn, mut rx)| async move {
                    let push = rx.recv().await?;
                    Some((push, (conn, rx)))
                })
                .filter_map(|push| async move { sharded_payload(push) })
                .boxed(),
            )
        }
    }
}

/// The payload of a sharded message (`smessage <channel> <payload>`);
/// `None` for the other pushes (subscription confirmations).
fn sharded_payload(push: redis::PushInfo) -> Option<Vec<u8>> {
    if push.kind != redis::PushKind::SMessage {
        return None;
    }
    match push.data.into_iter().nth(1)? {
        redis::Value::BulkString(bytes) => Some(bytes),
        _ => None,
    }
}

/// Queues every handler of one received event.
async fn dispatch(handlers: &EventHandlers, queue: &WorkQueue, body: &[u8]) {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => {
            warn!("Dropped an event that does not decode: {e}");
            return;
        }
    };
    let Some(list) = handlers.by_type.get(envelope.kind.as_str()) else {
        debug!("No handler for event {} here", envelope.kind);
        return;
    };
    for (name, handler) in list {
        let (name, handler, value) = (name.clone(), handler.clone(), envelope.payload.clone());
        let kind = envelope.kind.clone();
        let origin = envelope.origin;
        // `submit` waits while the queue is full: back-pressure on the
        // listener (Redis buffers for us) instead of unbounded memory.
        let queued = queue
            .submit(async move {
                let outcome = match AssertUnwindSafe(handler(value)).catch_unwind().await {
                    Ok(Ok(())) => {
                        debug!("Event {kind} from node {origin} handled by {name}");
                        "ok"
                    }
                    Ok(Err(e)) => {
                        warn!("Event handler {name} failed on {kind} from node {origin}: {e}");
                        "error"
                    }
                    Err(_) => {
                        warn!("Event handler {name} panicked on {kind} from node {origin}");
                        "panic"
                    }
                };
                metrics::counter!("gamemesh_events_handled_total", "type" => kind, "outcome" => outcome)
                    .increment(1);
            })
            .await;
        if queued.is_err() {
            return;
        }
    }
}

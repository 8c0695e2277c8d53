//! Pushes: messages from game code to players that nobody asked for (a
//! room's state every tick, a notice for one player, a broadcast).
//!
//! Game code builds a [`Push`] (a route such as `"arena.state"` and the
//! module's own encoded message) and hands it to the [`Pusher`], the seam
//! to the core: the core knows where a session is connected and writes the
//! `GamePush` to its socket, here or through the game server that owns it.
//! [`MemoryPusher`] is the in-memory twin tests read pushes from.
//!
//! Delivery is best effort, as the contract says: a player that is not
//! connected misses pushes (no backlog). Pushes to one recipient through
//! [`Pusher::to_sessions`] arrive in the order they were handed over,
//! which is what makes a room's ticks arrive in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prost::Message;
use thiserror::Error;
use tokio::sync::Notify;

use gamemesh_proto::client::{server_packet, GamePush, ServerPacket};

use super::error::GameError;
use super::route::RouteName;
use super::sessions::MemorySessions;

/// One push, encoded once as the `ServerPacket` every recipient gets
/// (sequence id 0), so a room's push to its members costs one encoding
/// however many they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The route of a `GamePush` (`None` for a built-in body).
    route: Option<RouteName>,
    /// The encoded `ServerPacket`.
    packet: Bytes,
}

impl Push {
    /// A `GamePush` of `msg` under `route`. A route that breaks the naming
    /// rule is a bug in the module: `INTERNAL`.
    pub fn new<M: Message>(route: &str, msg: &M) -> Result<Self, GameError> {
        let route = RouteName::parse(route).ok_or_else(|| {
            GameError::internal(format!(
                "push route \"{route}\" is not 1 to 64 bytes of a-z, 0-9, '_' and '.'"
            ))
        })?;
        Ok(Self::game(route, Bytes::from(msg.encode_to_vec())))
    }

    /// A `GamePush` of an encoded payload under a checked route.
    pub fn game(route: RouteName, payload: Bytes) -> Self {
        let packet = ServerPacket {
            sequence_id: 0,
            body: Some(server_packet::Body::GamePush(GamePush {
                route: route.as_str().to_string(),
                payload,
            })),
        };
        Self {
            route: Some(route),
            packet: Bytes::from(packet.encode_to_vec()),
        }
    }

    /// A push of a body of the client contract itself (chat messages,
    /// notices): for the built-in modules that speak those bodies.
    pub fn packet(body: server_packet::Body) -> Self {
        let packet = ServerPacket {
            sequence_id: 0,
            body: Some(body),
        };
        Self {
            route: None,
            packet: Bytes::from(packet.encode_to_vec()),
        }
    }

    /// A push from its encoded `ServerPacket` (as it crossed the mesh).
    pub fn from_encoded(packet: Bytes) -> Result<Self, prost::DecodeError> {
        let route = match ServerPacket::decode(packet.clone())?.body {
            Some(server_packet::Body::GamePush(g)) => RouteName::parse(&g.route),
            _ => None,
        };
        Ok(Self { route, packet })
    }

    /// The `GamePush` route (`None` for a built-in body).
    pub fn route(&self) -> Option<&str> {
        self.route.as_ref().map(|r| r.as_str())
    }

    /// The encoded `ServerPacket`, as sockets receive it.
    pub fn encoded(&self) -> &Bytes {
        &self.packet
    }

    /// The `ServerPacket` (tests, and the memory twin).
    pub fn server_packet(&self) -> ServerPacket {
        ServerPacket::decode(self.packet.clone()).unwrap_or_default()
    }

    /// A `GamePush`'s payload decoded as `M`; `None` for another body or
    /// a payload that is not an `M` (tests and clients).
    pub fn decode<M: Message + Default>(&self) -> Option<M> {
        match self.server_packet().body {
            Some(server_packet::Body::GamePush(g)) => M::decode(g.payload).ok(),
            _ => None,
        }
    }
}

/// One session a push goes to, and where it was last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Recipient {
    /// The player.
    pub user_id: u64,
    /// The session the push is for: a push for an older session of the
    /// same user is dropped, not delivered to its replacement.
    pub session_id: u64,
    /// The game server that owns the session (0: not connected now).
    pub node: u64,
}

/// Why a push to one user did not go out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PushError {
    /// The user has no connected session anywhere.
    #[error("the user is not connected")]
    Offline,
    /// Where the user is could not be found out (the session store or the
    /// user's game server is unreachable). Nothing was sent.
    #[error("push unavailable: {0}")]
    Unavailable(String),
}

/// Where pushes go: the core's sessions, gateways and mesh. Implemented by
/// the game server; [`MemoryPusher`] in tests.
#[async_trait]
pub trait Pusher: Send + Sync + 'static {
    /// Sends `push` to each recipient's session at the node it names,
    /// without waiting. Pushes to one recipient arrive in call order. A
    /// recipient whose session is not at that node any more misses it.
    fn to_sessions(&self, recipients: &[Recipient], push: &Push);

    /// Sends `push` to `user_id`'s live session wherever it is connected.
    async fn to_user(&self, user_id: u64, push: &Push) -> Result<(), PushError>;

    /// Sends `push` to every session connected anywhere in the cluster.
    fn to_everyone(&self, push: &Push);
}

/// The in-memory [`Pusher`]: records what each user received, delivering
/// only where [`MemorySessions`] says the session is, exactly as the core
/// delivers only to the session a game server owns.
pub struct MemoryPusher {
    /// Where sessions are.
    sessions: Arc<MemorySessions>,
    /// Pushes received, per user, oldest first.
    received: Mutex<HashMap<u64, Vec<Push>>>,
    /// Woken on every delivery (tests wait on it).
    delivered: Notify,
}

impl MemoryPusher {
    /// A pusher delivering to the sessions in `sessions`.
    pub fn new(sessions: Arc<MemorySessions>) -> Self {
        Self {
            sessions,
            received: Mutex::new(HashMap::new()),
            delivered: Notify::new(),
        }
    }

    fn received(&self) -> MutexGuard<'_, HashMap<u64, Vec<Push>>> {
        self.received.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deliver(&self, user_id: u64, push: &Push) {
        self.received()
            .entry(user_id)
            .or_default()
            .push(push.clone());
        self.delivered.notify_waiters();
    }

    /// Everything `user_id` received so far, oldest first.
    pub fn pushes(&self, user_id: u64) -> Vec<Push> {
        self.received().get(&user_id).cloned().unwrap_or_default()
    }

    /// Everything `user_id` received so far, forgetting it.
    pub fn take(&self, user_id: u64) -> Vec<Push> {
        self.received().remove(&user_id).unwrap_or_default()
    }

    /// Waits up to `timeout` until `user_id` has received a push on
    /// `route` that `pick` accepts, and returns it decoded; pushes before
    /// it are consumed. `None` when none came.
    pub async fn wait_for<M, F>(
        &self,
        user_id: u64,
        route: &str,
        timeout: Duration,
        mut pick: F,
    ) -> Option<M>
    where
        M: Message + Default,
        F: FnMut(&M) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.delivered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut all = self.received();
                let queue = all.entry(user_id).or_default();
                while !queue.is_empty() {
                    let push = queue.remove(0);
                    if push.route() != Some(route) {
                        continue;
                    }
                    if let Some(m) = push.decode::<M>() {
                        if pick(&m) {
                            return Some(m);
                        }
                    }
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

#[async_trait]
impl Pusher for MemoryPusher {
    fn to_sessions(&self, recipients: &[Recipient], push: &Push) {
        for r in recipients {
            let here = self
                .sessions
                .get(r.user_id)
                .is_some_and(|s| s.session_id == r.session_id && s.node != 0 && s.node == r.node);
            if here {
                self.deliver(r.user_id, push);
            }
        }
    }

    async fn to_user(&self, user_id: u64, push: &Push) -> Result<(), PushError> {
        match self.sessions.get(user_id) {
            Some(s) if s.node != 0 => {
                self.deliver(user_id, push);
                Ok(())
            }
            _ => Err(PushError::Offline),
        }
    }

    fn to_everyone(&self, push: &Push) {
        for user in self.sessions.connected_users() {
            self.deliver(user, push);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sessions::SessionAt;

    fn pusher() -> (Arc<MemorySessions>, MemoryPusher) {
        let sessions = Arc::new(MemorySessions::default());
        (sessions.clone(), MemoryPusher::new(sessions))
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Note {
        #[prost(uint64, tag = "1")]
        n: u64,
    }

    #[test]
    fn a_push_route_must_follow_the_rule() {
        assert!(Push::new("arena.state", &Note { n: 1 }).is_ok());
        let e = Push::new("Arena.State", &Note { n: 1 }).unwrap_err();
        assert_eq!(e.code_name(), "INTERNAL");
    }

    #[tokio::test]
    async fn pushes_reach_only_the_session_at_the_node_named() {
        let (sessions, p) = pusher();
        sessions.set(
            1,
            SessionAt {
                session_id: 10,
                node: 7,
            },
        );
        let push = Push::new("m.x", &Note { n: 1 }).unwrap();
        let at = |session_id, node| Recipient {
            user_id: 1,
            session_id,
            node,
        };
        p.to_sessions(&[at(10, 7)], &push);
        p.to_sessions(&[at(10, 8)], &push); // wrong node
        p.to_sessions(&[at(11, 7)], &push); // an older session
        assert_eq!(p.take(1).len(), 1);
        sessions.set(
            1,
            SessionAt {
                session_id: 10,
                node: 0,
            },
        );
        p.to_sessions(&[at(10, 0)], &push);
        assert_eq!(p.to_user(1, &push).await, Err(PushError::Offline));
        p.to_everyone(&push);
        assert!(
            p.pushes(1).is_empty(),
            "a disconnected session misses pushes"
        );
    }

    #[tokio::test]
    async fn waiting_for_a_push_skips_others_and_times_out() {
        let (sessions, p) = pusher();
        sessions.set(
            1,
            SessionAt {
                session_id: 1,
                node: 1,
            },
        );
        let p = Arc::new(p);
        let p2 = p.clone();
        tokio::spawn(async move {
            for n in 0..5 {
                p2.to_everyone(&Push::new("m.x", &Note { n }).unwrap());
                tokio::task::yield_now().await;
            }
        });
        let got: Option<Note> = p
            .wait_for(1, "m.x", Duration::from_secs(5), |m: &Note| m.n == 3)
            .await;
        assert_eq!(got, Some(Note { n: 3 }));
        let none: Option<Note> = p
            .wait_for(1, "m.y", Duration::from_millis(20), |_| true)
            .await;
        assert_eq!(none, None);
    }
}

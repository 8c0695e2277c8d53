//! The hub's tasks: the dispatcher that turns gateway messages into work
//! for connection actors (posted to their mailboxes, see
//! [`crate::connection`]), and the flusher that saves sessions' progress
//! behind them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use gamemesh_node::peer_gate::PeerGate;
use gamemesh_proto::client::{ErrorCode, KickReason};
use gamemesh_proto::internal::{gateway_to_server, GatewayToServer};
use gamemesh_proto::{packets, Message};
use gamemesh_transport::{LinkEvent, LinkReceiver, NodeId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use uuid::Uuid;

use gamemesh_actors::{Addr, Builder, PostError};

use crate::connection::{Connection, ConnectionMsg, Frame, MAILBOX};
use crate::handlers::resume::close_left_behind;
use crate::pipeline::HubService;
use crate::request::ConnInfo;
use crate::state::HubState;

/// Events a dispatcher's buffer holds without growing (one wake-up's worth
/// at the link's default `recv_queue`).
const RECV_BATCH: usize = 256;

/// Most `recv_many` calls a heartbeat makes to read queued input before it
/// looks for silent gateways.
const MAX_DRAIN_ON_TICK: usize = 64;

/// Routes gateway messages to connection actors. It alone owns the actor
/// table, so the table needs no lock.
pub struct Dispatcher {
    /// Shared state.
    state: Arc<HubState>,
    /// The pipeline, cloned into each actor.
    service: HubService,
    /// Live connection actors.
    actors: HashMap<ConnInfo, Addr<Connection>>,
    /// Client IPs of sockets announced by `ClientConnected` whose first
    /// frame has not come yet; handed to the actor when it starts. Bounded
    /// by the open sockets (an entry goes with the first frame, the
    /// disconnect, or the gateway).
    peers: HashMap<ConnInfo, IpAddr>,
    /// Owns the actor tasks, so the shutdown waits for their last saves.
    tracker: TaskTracker,
}

/// The IP of a gateway's `peer_addr` (`ip:port`, `[v6]:port`, or a bare
/// address); `None` if it is neither.
fn peer_ip(peer_addr: &str) -> Option<IpAddr> {
    peer_addr
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| peer_addr.parse::<IpAddr>())
        .ok()
}

impl Dispatcher {
    /// A dispatcher spawning actors on `tracker`, each with its own clone
    /// of `service`.
    pub fn new(state: Arc<HubState>, service: HubService, tracker: TaskTracker) -> Self {
        Self {
            state,
            service,
            actors: HashMap::new(),
            peers: HashMap::new(),
            tracker,
        }
    }

    /// Runs until `shutdown` or until the link closes.
    ///
    /// Reads what a wake-up brings all at once (`recv_many`), so a burst of
    /// frames costs one wake-up of this task rather than one each.
    pub async fn run(
        mut self,
        mut events: LinkReceiver,
        heartbeat: Duration,
        peer_timeout: Duration,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut gate = self.state.gateways.trust().gate();
        let mut batch = Vec::with_capacity(RECV_BATCH);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                n = events.recv_many(&mut batch) => {
                    if n == 0 {
                        break;
                    }
                    self.handle_batch(&mut gate, &mut batch);
                }
                scheduled = tick.tick() => {
                    if !self.on_tick(&mut events, &mut gate, &mut batch, scheduled, peer_timeout) {
                        break;
                    }
                }
            }
        }
        // Stop taking work; actors finish what they hold and save.
        self.peers.clear();
        for (_, a) in self.actors.drain() {
            a.close();
        }
    }

    /// Handles (and empties) one wake-up's worth of link events.
    fn handle_batch(&mut self, gate: &mut PeerGate, batch: &mut Vec<LinkEvent>) {
        for event in batch.drain(..) {
            // A lost gateway: its clients reconnect through another one;
            // its hellos say when it is back. Our pipe to it is dialled
            // again under a fresh routing id.
            let lost = |peer| self.state.gateways.connection_lost(peer);
            let Some((from, routing_id, payload)) = event.message_or(lost) else {
                continue;
            };
            match GatewayToServer::decode(payload) {
                Ok(GatewayToServer { kind: Some(kind) }) => {
                    // Nothing from a gateway is acted on before its pipe
                    // proved the cluster secret (the gate logs and counts
                    // what it drops).
                    if gate.admit(from, &routing_id, &kind) {
                        self.handle(from, kind);
                    }
                }
                Ok(_) => debug!(gateway = from, "empty message from gateway"),
                Err(e) => {
                    warn!(gateway = from, error = %e, "undecodable message from gateway dropped")
                }
            }
        }
    }

    /// The heartbeat: owed kicks, silent gateways, gauges. False when the
    /// link closed meanwhile.
    ///
    /// Input already queued is read first: after a pause (SIGSTOP, a VM
    /// pause, swapping) the tick may fire before the gateways' queued
    /// hellos are read, and a gateway that kept saying hello must not be
    /// declared down for our own silence. A tick much later than scheduled
    /// (by more than half the peer timeout) means this process was paused:
    /// every gateway's silence is forgiven on that tick, and a gateway that
    /// is really gone is found one peer timeout later.
    fn on_tick(
        &mut self,
        events: &mut LinkReceiver,
        gate: &mut PeerGate,
        batch: &mut Vec<LinkEvent>,
        scheduled: tokio::time::Instant,
        peer_timeout: Duration,
    ) -> bool {
        self.state.pauses.observe();
        if !self.drain_queued(events, gate, batch) {
            return false;
        }
        let late = scheduled.elapsed();
        if late > peer_timeout / 2 {
            warn!(
                "Heartbeat {} ms late: this process was paused; not counting the gateways' silence meanwhile",
                late.as_millis()
            );
            self.state.gateways.forgive_silence();
        }
        self.state.gateways.retry_owed_kicks();
        for gw in self.state.gateways.take_silent(peer_timeout) {
            warn!(
                "Gateway {gw} is DOWN: no hello for {} ms; its sockets count as disconnected",
                peer_timeout.as_millis()
            );
            self.drop_gateway(gw);
        }
        self.sample_gauges();
        true
    }

    /// Handles every link event already queued, without waiting (bounded,
    /// so a flood cannot hold the heartbeat). False when the link closed.
    fn drain_queued(
        &mut self,
        events: &mut LinkReceiver,
        gate: &mut PeerGate,
        batch: &mut Vec<LinkEvent>,
    ) -> bool {
        for _ in 0..MAX_DRAIN_ON_TICK {
            match events.recv_many(batch).now_or_never() {
                None => return true,
                Some(0) => return false,
                Some(_) => self.handle_batch(gate, batch),
            }
        }
        true
    }

    /// The actor of `conn`, spawned on first use with the client IP its
    /// `ClientConnected` announced.
    fn actor(&mut self, conn: ConnInfo) -> &Addr<Connection> {
        self.actors.entry(conn).or_insert_with(|| {
            let peer_ip = self.peers.remove(&conn);
            Builder::new()
                .mailbox(MAILBOX)
                .tracker(&self.tracker)
                .name(format!("connection {}", conn.socket))
                .spawn(Connection::new(
                    self.state.clone(),
                    self.service.clone(),
                    conn,
                    peer_ip,
                ))
        })
    }

    /// Gauges sampled once a heartbeat: the actor table is this task's
    /// own, and a sample a second is all a dashboard needs.
    fn sample_gauges(&self) {
        let metrics = crate::metrics::hub();
        metrics.connections.set(self.actors.len() as f64);
        metrics.sessions.set(self.state.sessions.len() as f64);
        metrics
            .gateways_linked
            .set(self.state.gateways.ids().len() as f64);
        metrics
            .mesh_peers_up
            .set(self.state.mesh.live_peers().len() as f64);
    }

    fn drop_gateway(&mut self, gateway: NodeId) {
        self.peers.retain(|conn, _| conn.gateway != gateway);
        self.actors.retain(|conn, a| {
            if conn.gateway == gateway {
                a.close();
                false
            } else {
                true
            }
        });
    }

    fn handle(&mut self, from: NodeId, kind: gateway_to_server::Kind) {
        match kind {
            gateway_to_server::Kind::Hello(h) => {
                let outcome = self.state.gateways.on_hello(
                    from,
                    &h,
                    self.state.is_accepting(),
                    self.state.mesh.live_peers(),
                );
                if outcome == crate::cluster::gateways::HelloOutcome::Restarted {
                    warn!("Gateway {from} restarted: its previous sockets are gone");
                    self.drop_gateway(from);
                }
            }
            gateway_to_server::Kind::ClientConnected(c) => {
                debug!(gateway = from, peer = %c.peer_addr, "client connected");
                let Ok(socket) = Uuid::from_slice(&c.socket_id) else {
                    warn!(gateway = from, "client connected with a bad socket id");
                    return;
                };
                let conn = ConnInfo {
                    gateway: from,
                    socket,
                };
                match peer_ip(&c.peer_addr) {
                    Some(ip) if !self.actors.contains_key(&conn) => {
                        self.peers.insert(conn, ip);
                    }
                    Some(_) => {}
                    None => warn!(
                        gateway = from,
                        peer = %c.peer_addr,
                        "client connected from an unreadable address; only per-user login limits apply to it"
                    ),
                }
            }
            gateway_to_server::Kind::ClientFrame(f) => {
                let Ok(socket) = Uuid::from_slice(&f.socket_id) else {
                    warn!(gateway = from, "client frame with a bad socket id dropped");
                    return;
                };
                let conn = ConnInfo {
                    gateway: from,
                    socket,
                };
                let metrics = crate::metrics::hub();
                metrics.packets_in.increment(1);
                metrics.bytes_in.increment(f.body.len() as u64);
                let seq = packets::peek_sequence_id(&f.body);
                let frame = ConnectionMsg::Frame(Frame {
                    session_id: f.session_id,
                    user_id: f.user_id,
                    body: f.body,
                });
                let refused = match self.actor(conn).try_post(frame) {
                    Ok(()) => return,
                    // The actor stopped on its own: only a panic does that
                    // (and it saved its session on the way out). A fresh
                    // actor takes the socket, adopting the session if the
                    // frame is pinned to one.
                    Err(PostError::Stopped(frame)) => {
                        warn!(
                            "Connection actor for Socket={socket} had stopped; starting a new one"
                        );
                        self.actors.remove(&conn);
                        self.actor(conn).try_post(frame)
                    }
                    Err(full) => Err(full),
                };
                if refused.is_err() {
                    // The client has more packets in flight than its actor
                    // queues: refuse this one explicitly.
                    metrics.mailbox_full.increment(1);
                    let reply =
                        packets::error(seq, ErrorCode::RateLimited, "too many packets in flight");
                    self.state.gateways.send_to_client(from, &socket, &reply);
                }
            }
            gateway_to_server::Kind::ClientDisconnected(d) => {
                let Ok(socket) = Uuid::from_slice(&d.socket_id) else {
                    return;
                };
                let conn = ConnInfo {
                    gateway: from,
                    socket,
                };
                self.peers.remove(&conn);
                if let Some(a) = self.actors.remove(&conn) {
                    a.close();
                }
            }
        }
    }
}

/// Saves sessions' progress behind their packets: dirty sessions every
/// `interval`, every session every `refresh` (which also renews the
/// record's lifetime). A save refused by the store's epoch fence means the
/// session moved to another owner: its local state is dropped.
pub async fn flush_loop(
    state: Arc<HubState>,
    interval: Duration,
    refresh: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let refresh_every = (refresh.as_millis() / interval.as_millis().max(1)).max(1) as u64;
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        n += 1;
        let full = n.is_multiple_of(refresh_every);
        flush_once(&state, !full).await;
    }
}

/// One flush pass: the saves go to the store together
/// ([`crate::session::SessionStore::save_many`]: batched script calls on one Redis,
/// concurrent ones on a cluster).
pub async fn flush_once(state: &HubState, only_dirty: bool) {
    let (attached, progress): (Vec<_>, Vec<_>) = state
        .sessions
        .all()
        .into_iter()
        .filter(|a| !a.session.is_ended())
        .filter_map(|a| a.session.progress(only_dirty).map(|p| (a, p)))
        .unzip();
    if progress.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    let results = state.store.save_many(&progress, state.live_ttl).await;
    let metrics = crate::metrics::hub();
    metrics
        .flush_seconds
        .record(started.elapsed().as_secs_f64());
    metrics.flush_saves.increment(progress.len() as u64);
    for ((a, p), r) in attached.iter().zip(&progress).zip(results) {
        match r {
            Ok(true) => a.session.saved(p),
            Ok(false) => {
                // Ended here meanwhile (logout, a newer login, a release):
                // whoever ended it has dealt with the client.
                if a.session.is_ended() {
                    continue;
                }
                // Gone from the store altogether (expired, or Redis lost
                // its data): the client must hear it, not find out later
                // through NOT_AUTHENTICATED. Moved to another owner on
                // another socket: this one is left behind, closed.
                let now = state.store.get(a.session.user_id).await;
                let gone = matches!(now, Ok(None));
                // A logout's delete also fences this save; it ends the
                // local session right after, so look again before kicking.
                if state.sessions.end(a.session.session_id).is_none() {
                    continue;
                }
                info!(
                    "Session fenced off: SessionId={} {}; dropping it here",
                    a.session.session_id,
                    if gone {
                        "no longer exists"
                    } else {
                        "moved to another owner"
                    }
                );
                // Where it went unknown (the store did not answer): it may
                // have moved with its socket, which must stay open.
                if let Ok(now) = now {
                    close_left_behind(state, a, now.as_ref());
                }
            }
            Err(e) => {
                debug!(
                    "Saving SessionId={} failed: {e}; retrying next pass",
                    a.session.session_id
                );
                a.session.mark_dirty();
            }
        }
    }
}

/// After Redis failed over to a new primary, saves every session owned
/// here again (a full pass), at once. Saves the old primary acknowledged
/// after the sentinels had promoted another node (before we noticed) were
/// lost with it, and the flusher counts them as done. Each save carries
/// every reply the session holds, not only the unsaved ones: `SAVE` never
/// moves progress backwards and writes each reply to the ring field its
/// index names, so saving twice is harmless.
pub async fn resave_after_failover(
    state: Arc<HubState>,
    mut primary_changes: tokio::sync::watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = primary_changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let all = state.sessions.all();
        info!(
            "Redis has a new primary: saving all {} sessions owned here again",
            all.len()
        );
        for a in &all {
            a.session.resend_all();
        }
        flush_once(&state, false).await;
    }
}

/// Graceful stop: every session owned here is saved as disconnected (so it
/// can be resumed on any game server) and its client is kicked with
/// `SERVER_SHUTDOWN`.
pub async fn release_all(state: &HubState) {
    let all = state.sessions.all();
    if all.is_empty() {
        return;
    }
    info!("Releasing {} sessions before shutdown", all.len());
    let saves = all.iter().filter_map(|a| {
        let p = a.session.progress(false)?;
        Some(async move {
            let _ = state.store.disconnect(&p, state.resume_grace).await;
            state.gateways.kick(
                a.gateway,
                &a.socket,
                a.session.session_id,
                KickReason::ServerShutdown,
                "game server shutting down; resume your session",
            );
            state.sessions.end(a.session.session_id);
        })
    });
    futures::future::join_all(saves).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses_are_read_as_the_gateway_writes_them() {
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(peer_ip("203.0.113.7:54321"), Some(v4));
        assert_eq!(peer_ip("[2001:db8::1]:443"), Some(v6));
        assert_eq!(peer_ip("2001:db8::1"), Some(v6));
        assert_eq!(peer_ip("not an address"), None);
    }
}

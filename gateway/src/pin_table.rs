//! socket -> (session, game server): the only state a gateway keeps about
//! its clients besides the sockets themselves.
//!
//! Every socket has a route from the moment it connects: the game server its
//! frames go to. A game server's `PinSession` adds the session id, and from
//! then on every frame carries it, so any game server can tell which session
//! a frame belongs to (that is what lets a live game server adopt the
//! sessions of a dead one).
//!
//! A session is pinned to at most one socket here: pinning it to a new
//! socket (a resume through this gateway) supersedes the old one, which
//! the caller closes. The game server that resumed the session closes the
//! socket the store names, but the store can name one the session never
//! really used (a take-over whose answer was lost), while the old socket
//! is in this table for sure.

use std::collections::HashMap;
use std::sync::Mutex;

use gamemesh_transport::NodeId;
use uuid::Uuid;

/// Where one socket's frames go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The game server this socket's frames are sent to.
    pub game_server: NodeId,
    /// The session it is pinned to; 0 until a game server pins it.
    pub session_id: u64,
    /// The session's user (opaque to the gateway, echoed to game servers).
    pub user_id: u64,
}

/// The gateway's routing table. A plain mutex: each operation is a hash
/// lookup or two, far shorter than anything that could contend with it.
#[derive(Debug, Default)]
pub struct PinTable {
    /// Both indexes, under one lock so they never disagree.
    inner: Mutex<Index>,
}

#[derive(Debug, Default)]
struct Index {
    /// Route of every open socket.
    routes: HashMap<Uuid, Route>,
    /// The socket each pinned session is on.
    by_session: HashMap<u64, Uuid>,
}

impl Index {
    /// Forgets that `socket` holds `session_id` (if it is the one that
    /// does).
    fn unpin(&mut self, session_id: u64, socket: &Uuid) {
        if session_id != 0 && self.by_session.get(&session_id) == Some(socket) {
            self.by_session.remove(&session_id);
        }
    }
}

impl PinTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a new socket, routed to `game_server` and not yet pinned,
    /// and returns its route.
    pub fn insert(&self, socket: Uuid, game_server: NodeId) -> Route {
        let route = Route {
            game_server,
            session_id: 0,
            user_id: 0,
        };
        self.lock().routes.insert(socket, route);
        route
    }

    /// The route of `socket`, if it is open.
    pub fn get(&self, socket: &Uuid) -> Option<Route> {
        self.lock().routes.get(socket).copied()
    }

    /// Pins `socket` to `session_id` on `game_server`. `None` when the
    /// socket is already gone (the pin arrived after a disconnect); else
    /// the other open socket the session was pinned to here, if any, which
    /// the session has left: the caller closes it.
    pub fn pin(
        &self,
        socket: &Uuid,
        session_id: u64,
        user_id: u64,
        game_server: NodeId,
    ) -> Option<Option<Uuid>> {
        let mut idx = self.lock();
        let previous = idx.routes.get(socket)?.session_id;
        idx.unpin(previous, socket);
        idx.routes.insert(
            *socket,
            Route {
                game_server,
                session_id,
                user_id,
            },
        );
        if session_id == 0 {
            return Some(None);
        }
        let left = idx
            .by_session
            .insert(session_id, *socket)
            .filter(|old| old != socket && idx.routes.contains_key(old));
        Some(left)
    }

    /// Re-routes `socket` to another game server, keeping its session
    /// (failover). Returns the updated route.
    pub fn reroute(&self, socket: &Uuid, game_server: NodeId) -> Option<Route> {
        let mut idx = self.lock();
        let r = idx.routes.get_mut(socket)?;
        r.game_server = game_server;
        Some(*r)
    }

    /// Forgets a closed socket, returning its last route.
    pub fn remove(&self, socket: &Uuid) -> Option<Route> {
        let mut idx = self.lock();
        let route = idx.routes.remove(socket)?;
        idx.unpin(route.session_id, socket);
        Some(route)
    }

    /// Number of open sockets.
    pub fn len(&self) -> usize {
        self.lock().routes.len()
    }

    /// True when no socket is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // A panic while holding this lock cannot leave half-written maps
        // (no operation can panic between its inserts and removes), so
        // poisoning is safe to ignore.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_and_reroute_keep_the_session() {
        let t = PinTable::new();
        let s = Uuid::new_v4();
        t.insert(s, 1);
        let r = |game_server, session_id, user_id| Route {
            game_server,
            session_id,
            user_id,
        };
        assert_eq!(t.get(&s), Some(r(1, 0, 0)));
        assert_eq!(t.pin(&s, 77, 5, 2), Some(None));
        assert_eq!(t.reroute(&s, 3), Some(r(3, 77, 5)));
        assert_eq!(t.remove(&s), Some(r(3, 77, 5)));
        assert_eq!(t.pin(&s, 78, 5, 2), None, "pin after disconnect is ignored");
        assert!(t.is_empty());
    }

    #[test]
    fn a_session_pinned_to_a_new_socket_leaves_its_old_one() {
        let t = PinTable::new();
        let (old, new, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        for s in [old, new, other] {
            t.insert(s, 1);
        }
        assert_eq!(t.pin(&old, 77, 5, 1), Some(None));
        assert_eq!(t.pin(&old, 77, 5, 2), Some(None), "the same socket again");
        assert_eq!(t.pin(&new, 77, 5, 2), Some(Some(old)), "a resume elsewhere");
        assert_eq!(t.pin(&other, 78, 6, 1), Some(None), "another session");
        // The new socket logs in as someone else: session 77 is on no
        // socket here any more, and a later pin of it leaves nothing.
        assert_eq!(t.pin(&new, 79, 5, 2), Some(None));
        assert_eq!(t.pin(&other, 77, 5, 1), Some(None));
        // A closed socket is not left behind.
        t.remove(&other);
        assert_eq!(t.pin(&old, 77, 5, 1), Some(None));
    }
}

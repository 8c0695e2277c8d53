//! socket -> (session, game server): the only state a gateway keeps about
//! its clients besides the sockets themselves.
//!
//! Every socket has a route from the moment it connects: the game server its
//! frames go to. A game server's `PinSession` adds the session id, and from
//! then on every frame carries it, so any game server can tell which session
//! a frame belongs to (that is what lets a live game server adopt the
//! sessions of a dead one).

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
/// lookup, far shorter than anything that could contend with it.
#[derive(Debug, Default)]
pub struct PinTable {
    /// Route of every open socket.
    routes: Mutex<HashMap<Uuid, Route>>,
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
        self.lock().insert(socket, route);
        route
    }

    /// The route of `socket`, if it is open.
    pub fn get(&self, socket: &Uuid) -> Option<Route> {
        self.lock().get(socket).copied()
    }

    /// Pins `socket` to `session_id` on `game_server`. Returns false when
    /// the socket is already gone (the pin arrived after a disconnect).
    pub fn pin(&self, socket: &Uuid, session_id: u64, user_id: u64, game_server: NodeId) -> bool {
        match self.lock().get_mut(socket) {
            Some(r) => {
                *r = Route {
                    game_server,
                    session_id,
                    user_id,
                };
                true
            }
            None => false,
        }
    }

    /// Re-routes `socket` to another game server, keeping its session
    /// (failover). Returns the updated route.
    pub fn reroute(&self, socket: &Uuid, game_server: NodeId) -> Option<Route> {
        let mut routes = self.lock();
        let r = routes.get_mut(socket)?;
        r.game_server = game_server;
        Some(*r)
    }

    /// Forgets a closed socket, returning its last route.
    pub fn remove(&self, socket: &Uuid) -> Option<Route> {
        self.lock().remove(socket)
    }

    /// Number of open sockets.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no socket is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Route>> {
        // A panic while holding this lock cannot leave a half-written map
        // (every operation is a single insert/get/remove), so poisoning is
        // safe to ignore.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
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
        assert!(t.pin(&s, 77, 5, 2));
        assert_eq!(t.reroute(&s, 3), Some(r(3, 77, 5)));
        assert_eq!(t.remove(&s), Some(r(3, 77, 5)));
        assert!(!t.pin(&s, 78, 5, 2), "pin after disconnect is ignored");
        assert!(t.is_empty());
    }
}

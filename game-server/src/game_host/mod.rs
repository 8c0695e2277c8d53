//! The core's side of the game API ([`crate::api`]): the implementations
//! of the seams the API defines, on this game server's sessions, gateway
//! links, mesh and stores, and the mesh messages that carry the API
//! between game servers.
//!
//! - [`pusher::CorePusher`]: pushes to sessions here, or over the mesh
//!   (`GamePushDelivery`, `GamePushEveryone`, `DeliverToUser`).
//! - [`placement::MeshPlacement`]: rooms placed by rendezvous hashing over
//!   the live game servers; requests to a room elsewhere forwarded as
//!   `GameRoomRequest` / `GameRoomReply`.
//! - [`sessions::StoreDirectory`]: where members' sessions are, from the
//!   session store.
//!
//! The started [`GameRuntime`] is kept in the game server's state: its
//! router hands `GameRequest`s (and the contract bodies the built-in
//! modules answer) to it behind the whole pipeline, and the session
//! handlers tell it when a session ends or moves. The mesh hands the
//! game's messages to the hook [`start`] registers, so the mesh does not
//! know the game.

pub mod placement;
pub mod pusher;
pub mod sessions;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use gamemesh_proto::internal::{mesh_message, GameRoomReply};
use gamemesh_transport::NodeId;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{
    App, BuildError, GameRuntime, PlayerDataStore, RoomSettings, RoomStore, Services,
};
use crate::state::HubState;

/// What the mesh hook needs to answer the game's messages.
struct Link {
    /// The game server (weak: the mesh, inside it, holds this).
    state: Weak<HubState>,
    /// Serves forwarded room requests.
    runtime: GameRuntime,
    /// Forwarded room requests waiting for replies.
    placement: Arc<placement::MeshPlacement>,
    /// Owns the tasks serving forwarded room requests.
    tracker: TaskTracker,
}

/// Where rooms and player data are kept.
pub struct Stores {
    /// Rooms' leases, checkpoints, indexes.
    pub rooms: Arc<dyn RoomStore>,
    /// Per-player data.
    pub data: Arc<dyn PlayerDataStore>,
}

/// Starts `app`'s modules on this game server: keeps the runtime in
/// `state` and hooks the game's mesh messages. Their tasks run on
/// `tracker` until `tasks`.
pub fn start(
    state: &Arc<HubState>,
    app: App,
    stores: Stores,
    settings: RoomSettings,
    tracker: &TaskTracker,
    tasks: CancellationToken,
) -> Result<(), BuildError> {
    let weak = Arc::downgrade(state);
    let placement = Arc::new(placement::MeshPlacement::new(
        weak.clone(),
        state.node_id,
        settings.call_timeout,
    ));
    let services = Services {
        node_id: state.node_id,
        pusher: Arc::new(pusher::CorePusher::new(weak.clone(), state.node_id)),
        placement: placement.clone(),
        rooms: stores.rooms,
        data: stores.data,
        sessions: Arc::new(sessions::StoreDirectory::new(state.store.clone())),
        settings,
        tracker: tracker.clone(),
        shutdown: tasks,
    };
    let runtime = app.start(services)?;
    let _ = state.game.set(runtime.clone());
    let link = Link {
        state: weak,
        runtime,
        placement,
        tracker: tracker.clone(),
    };
    state
        .mesh
        .set_game_hook(Box::new(move |from, kind| on_mesh(&link, from, kind)));
    Ok(())
}

/// A game API message from game server `from`.
fn on_mesh(link: &Link, from: NodeId, kind: mesh_message::Kind) {
    let Some(state) = link.state.upgrade() else {
        return;
    };
    match kind {
        mesh_message::Kind::GameRoomRequest(r) => {
            // Served beside the mesh loop: a room may take a while.
            let answer = link.runtime.serve_room(r.body);
            link.tracker.spawn(async move {
                let body = answer.await;
                if state.faults.drop_room_replies.load(Ordering::Acquire) {
                    tracing::debug!(from, "room reply dropped (test fault)");
                    return;
                }
                state.mesh.send_kind(
                    from,
                    mesh_message::Kind::GameRoomReply(GameRoomReply {
                        request_id: r.request_id,
                        body,
                    }),
                );
            });
        }
        mesh_message::Kind::GameRoomReply(r) => link.placement.on_reply(r.request_id, r.body),
        mesh_message::Kind::GamePushDelivery(d) => {
            let mut local = pusher::LocalFanOut::default();
            for (user, session) in d.user_ids.iter().zip(&d.session_ids) {
                local.add_session(&state, *user, *session);
            }
            local.send(&state, &d.packet);
        }
        mesh_message::Kind::GamePushEveryone(e) => {
            pusher::deliver_everyone_here(&state, &e.packet);
        }
        _ => {}
    }
}

//! The game server's side of the mesh ([`MeshHost`] for [`HubState`]):
//! what it does with what peers send about its sessions. Apart from the
//! mesh itself, so the mesh does not depend on the state that holds it.
//!
//! - `SessionEnded`: a login elsewhere replaced a session owned here; its
//!   local state is dropped.
//! - `DeliverToUser`: a push for a user whose session is owned here.
//! - `ReleaseSession`: a resume elsewhere takes a session owned here; its
//!   final progress is saved and it is let go.

use gamemesh_proto::internal::mesh_message;
use gamemesh_proto::Message;
use gamemesh_transport::NodeId;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::cluster::mesh::{Mesh, MeshHost};
use crate::state::HubState;

impl MeshHost for HubState {
    fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    fn is_accepting(&self) -> bool {
        HubState::is_accepting(self)
    }

    fn on_message(&self, from: NodeId, kind: mesh_message::Kind) {
        match kind {
            mesh_message::Kind::SessionEnded(e) => {
                let ended = self.sessions.end(e.session_id).is_some();
                if ended {
                    info!(
                        "Session {} ended by game server {from} ({}); local state dropped",
                        e.session_id, e.reason
                    );
                }
            }
            mesh_message::Kind::DeliverToUser(d) => {
                // Written as it came: an encoded ServerPacket.
                if gamemesh_proto::client::ServerPacket::decode(d.body.clone()).is_err() {
                    warn!(peer = from, "undecodable push dropped");
                    return;
                }
                match self.sessions.by_user(d.user_id) {
                    Some(a) => self.gateways.send_encoded(a.gateway, &a.socket, d.body),
                    None => debug!(
                        user = d.user_id,
                        "push for a user not connected here dropped"
                    ),
                }
            }
            _ => {}
        }
    }

    async fn release(&self, session_id: u64, to_socket: Option<Uuid>) -> bool {
        let Some(a) = self.sessions.get(session_id) else {
            return false;
        };
        let Some(progress) = a.session.progress(false) else {
            return false;
        };
        // End first: the socket's actor must not save over what we save now.
        self.sessions.end(session_id);
        // Whoever resumes closes the socket the store names; the one the
        // session was really on here may be another (the store's record
        // can be a take-over whose reply was lost), so close it too. The
        // kick names the session: a socket moved on meanwhile ignores it.
        if to_socket != Some(a.socket) {
            self.gateways
                .close_superseded(a.gateway, &a.socket, session_id);
        }
        if let Some(game) = self.game() {
            game.session_released(session_id);
        }
        let saved = matches!(
            self.store.disconnect(&progress, self.resume_grace).await,
            Ok(true)
        );
        info!(
            "Session released: SessionId={session_id}, LastSequenceId={}, saved={saved}",
            progress.last_seq
        );
        saved
    }
}

//! A game server played by a test over a real ZeroMQ link
//! (tests/internal_auth.rs, tests/multicast.rs): the part that gets it
//! linked by the gateways.

use std::collections::HashSet;

use bytes::Bytes;
use gamemesh_proto::cluster_auth::{self, ClusterSecret};
use gamemesh_proto::internal::{server_to_gateway, GatewayHello, ServerHello, ServerToGateway};
use gamemesh_proto::Message;
use gamemesh_transport::{Link, NodeId, ZmqLink};

/// Answers gateway `from`'s `hello` as game server 1, accepting logins, so
/// the gateway links `link`. The first hello from a gateway opens the pipe
/// to it (`linked` remembers which are open): `connect` opens a new pipe
/// each time, and an answer sent on a pipe that is not connected yet is
/// refused, so reconnecting on every hello could leave the gateway
/// unanswered for as long as the race goes on. The answer is signed with
/// `secret` for the pipe it goes out on; a failed send is left to the
/// gateway's next hello.
pub fn answer_hello(
    link: &ZmqLink,
    linked: &mut HashSet<NodeId>,
    from: NodeId,
    hello: &GatewayHello,
    secret: Option<&ClusterSecret>,
) {
    if linked.insert(from) {
        let _ = link.connect(from, &hello.p2p_endpoint);
    }
    let me = link.local_endpoint().to_string();
    let _ = link.send_signed(from, &|rid| {
        let mut answer = ServerHello {
            game_server_node_id: 1,
            p2p_endpoint: me.clone(),
            incarnation: 1,
            accepting_logins: true,
            peers: vec![],
            probe: hello.probe,
            proof: None,
        };
        cluster_auth::sign(secret, rid, &mut answer);
        Bytes::from(
            ServerToGateway {
                kind: Some(server_to_gateway::Kind::Hello(answer)),
            }
            .encode_to_vec(),
        )
    });
}

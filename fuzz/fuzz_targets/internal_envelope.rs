//! The internal envelopes a ZeroMQ peer sends (`GatewayToServer`,
//! `ServerToGateway`, `MeshMessage`) and the `ReplyCache` read back from the
//! session store, decoded from arbitrary bytes.
//!
//! Every message type is decoded from the same input (a garbage frame can
//! arrive on any socket). Checked, besides "never panics": whatever decodes
//! re-encodes to bytes that decode to an equal message, with `encoded_len`
//! matching; client bodies carried inside (`ClientFrame.body`) go through
//! `ClientPacket::decode` and `peek_sequence_id` as a game server does.
#![no_main]

use gamemesh_proto::client::ClientPacket;
use gamemesh_proto::internal::{
    gateway_to_server, GatewayToServer, MeshMessage, ReplyCache, ServerToGateway,
};
use gamemesh_proto::packets::peek_sequence_id;
use gamemesh_proto::Message;
use libfuzzer_sys::fuzz_target;

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) -> Option<M> {
    let msg = M::decode(data).ok()?;
    let bytes = msg.encode_to_vec();
    assert_eq!(bytes.len(), msg.encoded_len());
    let again = M::decode(&bytes[..]).expect("a re-encoded message decodes");
    assert_eq!(again, msg, "decode(encode(m)) != m");
    Some(msg)
}

fuzz_target!(|data: &[u8]| {
    if let Some(GatewayToServer {
        kind: Some(gateway_to_server::Kind::ClientFrame(frame)),
    }) = round_trip::<GatewayToServer>(data)
    {
        let _ = peek_sequence_id(&frame.body);
        let _ = ClientPacket::decode(frame.body);
    }
    round_trip::<ServerToGateway>(data);
    round_trip::<MeshMessage>(data);
    round_trip::<ReplyCache>(data);
});

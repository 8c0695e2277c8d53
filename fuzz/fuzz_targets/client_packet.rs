//! `ClientPacket` decoding and `peek_sequence_id`, on arbitrary frame bodies
//! (anything a client socket delivers).
//!
//! Checked, besides "never panics":
//! - `peek_sequence_id` agrees with the decoded `sequence_id` whenever the
//!   body decodes (in particular when it starts with field 1, tag byte 0x08,
//!   as prost writes it), whatever the field order or repetition: the
//!   gateway and game server rely on it to answer an unrelayable frame;
//! - a decoded packet re-encodes to bytes that decode to the same packet,
//!   start with field 1 whenever `sequence_id != 0`, and peek correctly;
//! - `encoded_len` matches the encoding.
#![no_main]

use gamemesh_proto::client::ClientPacket;
use gamemesh_proto::packets::peek_sequence_id;
use gamemesh_proto::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let peeked = peek_sequence_id(data);
    let Ok(packet) = ClientPacket::decode(data) else {
        return;
    };
    assert_eq!(
        peeked, packet.sequence_id,
        "peek_sequence_id disagrees with the decoded sequence_id"
    );

    let bytes = packet.encode_to_vec();
    assert_eq!(bytes.len(), packet.encoded_len());
    let again = ClientPacket::decode(&bytes[..]).expect("a re-encoded packet decodes");
    assert_eq!(again, packet, "decode(encode(p)) != p");
    assert_eq!(peek_sequence_id(&bytes), packet.sequence_id);
    if packet.sequence_id != 0 {
        assert_eq!(
            bytes.first(),
            Some(&0x08),
            "prost no longer writes field 1 first"
        );
    }
});

//! What the flusher pays per dirty session and pass: recording one reply
//! and taking the session's progress (the watermark and the replies the
//! store does not have yet) to save. A player who sends every tick dirties its session on
//! every flush pass, so at 2,000 players and 10 passes a second this runs
//! 20,000 times a second on one game server.
//!
//! `cargo bench -p gamemesh-game-server --bench flush`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use gamemesh_game_server::session::LocalSession;
use gamemesh_proto::client::{server_packet, EchoResponse, ServerPacket};

/// Replies kept per session (`--reply-cache`'s default).
const REPLY_CACHE: usize = 32;

/// A reply about the size of an arena move's answer.
fn reply(seq: u64) -> ServerPacket {
    ServerPacket {
        sequence_id: seq,
        body: Some(server_packet::Body::Echo(EchoResponse {
            data: vec![7u8; 48].into(),
        })),
    }
}

/// A session whose reply cache is full and saved, as it is after a minute
/// of play.
fn full_session() -> LocalSession {
    let s = LocalSession::new(1, 1, 1, 0, Vec::new(), 0, REPLY_CACHE);
    for seq in 1..=REPLY_CACHE as u64 {
        s.record(seq, &reply(seq));
    }
    if let Some(p) = s.progress(true) {
        s.saved(&p);
    }
    s
}

fn bench(c: &mut Criterion) {
    c.bench_function("record one reply, then progress of a full cache", |b| {
        b.iter_batched_ref(
            full_session,
            |s| {
                let seq = s.last_executed() + 1;
                s.record(seq, &reply(seq));
                s.progress(true)
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Echo, as a module: answers the data it was sent.

use gamemesh_proto::client::{client_packet, server_packet, EchoRequest, EchoResponse};

use crate::api::{App, Ctx, GameError, Module};

/// Test hook: an echo of exactly these bytes panics, so tests can prove a
/// panicking handler answers `INTERNAL` and the server keeps serving.
pub const PANIC_PAYLOAD: &[u8] = b"__gamemesh_test_panic__";

/// The echo module.
pub struct Echo;

/// Echoes `req.data`.
async fn echo(_ctx: Ctx, req: EchoRequest) -> Result<EchoResponse, GameError> {
    if req.data == PANIC_PAYLOAD {
        panic!("echo handler asked to panic (test hook)");
    }
    Ok(EchoResponse { data: req.data })
}

impl Module for Echo {
    fn name(&self) -> &str {
        "echo"
    }

    fn build(&self, app: &mut App) {
        app.body(
            "echo.echo",
            |b| match b {
                client_packet::Body::Echo(r) => Some(r.clone()),
                _ => None,
            },
            server_packet::Body::Echo,
            echo,
        );
    }
}

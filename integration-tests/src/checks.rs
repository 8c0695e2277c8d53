//! Small checks many test files make: the error code of a refused call,
//! what Redis holds of a user's session, and a start-up that must fail
//! with one plain sentence.

use gamemesh_game_server::{Config as GsConfig, GameServerError};
use gamemesh_proto::client::ErrorCode;
use tokio_util::sync::CancellationToken;

use crate::ClientError;

/// The error code of a failed call, with a readable panic (naming `what`)
/// otherwise.
pub fn code_of<T: std::fmt::Debug>(result: Result<T, ClientError>, what: &str) -> ErrorCode {
    match result {
        Err(e) => e
            .error_code()
            .unwrap_or_else(|| panic!("{what}: expected an ErrorResponse, got: {e}")),
        Ok(v) => panic!("{what}: expected an ErrorResponse, got success: {v:?}"),
    }
}

/// The Redis key of a user's session, as the contract fixes it.
pub fn session_key(user_id: u64) -> String {
    format!("gm:{{u:{user_id}}}:session")
}

/// One field of the user's session record, as text (`None`: no record or
/// no such field).
pub fn session_field(
    conn: &mut impl redis::ConnectionLike,
    user_id: u64,
    name: &str,
) -> Option<String> {
    redis::cmd("HGET")
        .arg(session_key(user_id))
        .arg(name)
        .query(conn)
        .unwrap_or_else(|e| panic!("HGET {name}: {e}"))
}

/// Starting a game server with `config` fails (its Redis must refuse
/// it); returns the error.
pub async fn start_fails(config: GsConfig) -> GameServerError {
    gamemesh_test_support::init_tracing();
    match gamemesh_game_server::start(config, CancellationToken::new()).await {
        Ok(_) => panic!("the game server started although its Redis must refuse it"),
        Err(e) => e,
    }
}

/// A plain sentence: one line, with `secret` nowhere in it.
pub fn assert_plain_sentence(message: &str, secret: &str) {
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        !message.contains(secret),
        "the password is not shown: {message}"
    );
}

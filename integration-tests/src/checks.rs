//! Small checks many test files make: the error code of a refused call,
//! and what Redis holds of a user's session.

use gamemesh_proto::client::ErrorCode;

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

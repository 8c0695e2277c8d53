//! The errors game code sees and returns.
//!
//! [`GameError`] is what a handler or a room callback returns instead of
//! its answer; each variant is one `ErrorCode` of the client contract, so
//! the mapping a client sees is decided here and nowhere else.
//! [`BuildError`] is what a studio sees at start-up when its modules
//! registered something the API cannot run.

use gamemesh_proto::client::ErrorCode;
use thiserror::Error;

/// Why game code did not answer with its message. Every variant becomes
/// one `ErrorResponse` code (see [`GameError::code_name`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GameError {
    /// The game said no (`REFUSED`): the request was understood and
    /// breaks a rule of the game ("room full", "dx must be -1, 0 or 1").
    /// The detail reaches the player.
    #[error("refused: {0}")]
    Refused(String),
    /// The payload did not decode into the route's message
    /// (`BAD_PAYLOAD`). The API returns it before a handler runs.
    #[error("bad payload: {0}")]
    BadPayload(String),
    /// No game code is registered for the route (`UNKNOWN_ROUTE`).
    #[error("unknown route: {0}")]
    UnknownRoute(String),
    /// Something the game needs (Redis, the room's game server) did not
    /// answer (`UNAVAILABLE`), and what the request does **may have
    /// happened** (a write that timed out, a room that took the request
    /// and did not answer). The reply is cached against the sequence id
    /// like any answer, so a client's re-send with the same id gets this
    /// reply back and never runs the handler twice. When the handler knows
    /// nothing happened, it says so with [`GameError::NothingHappened`].
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// `UNAVAILABLE`, and the handler knows **nothing happened** (the
    /// store refused before anything was written, a request was never
    /// sent, a change was undone), or that running it again changes
    /// nothing (a read, a join of a room the player is in). The one reply
    /// that is not cached against the sequence id: the client's re-send
    /// with the same id runs the handler again. Return it only when that
    /// is true; when unsure, [`GameError::Unavailable`] is the safe answer.
    #[error("unavailable, nothing done: {0}")]
    NothingHappened(String),
    /// The game code failed (`INTERNAL`): a bug, not the player's fault.
    #[error("internal: {0}")]
    Internal(String),
    /// Another code of the client contract, for the built-in modules that
    /// answer the contract's own bodies (chat's `NOT_IN_ROOM`, say).
    #[error("{}: {detail}", code.as_str_name())]
    Code {
        /// The code.
        code: ErrorCode,
        /// Why, for the player.
        detail: String,
    },
}

impl GameError {
    /// A refusal with `detail` for the player: the typed "no" of a
    /// handler or room (`Err(GameError::refused("room full"))`).
    pub fn refused(detail: impl Into<String>) -> Self {
        Self::Refused(detail.into())
    }

    /// `UNAVAILABLE` with `detail`, when what the request does may have
    /// happened (cached against the sequence id).
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::Unavailable(detail.into())
    }

    /// `UNAVAILABLE` with `detail`, when nothing happened and a re-send
    /// with the same sequence id should run again (not cached).
    pub fn nothing_happened(detail: impl Into<String>) -> Self {
        Self::NothingHappened(detail.into())
    }

    /// True when this error promises nothing happened, so its reply is
    /// not cached against the sequence id.
    pub fn is_nothing_happened(&self) -> bool {
        matches!(self, Self::NothingHappened(_))
    }

    /// This error, with an `Unavailable` turned into `NothingHappened`:
    /// for a handler that changes nothing (a read) or whose second run
    /// changes nothing (an idempotent join), so a re-send runs again
    /// rather than replaying the outage.
    pub fn nothing_happened_if_unavailable(self) -> Self {
        match self {
            Self::Unavailable(d) => Self::NothingHappened(d),
            other => other,
        }
    }

    /// `INTERNAL` with `detail` (for logs; the player sees it too).
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::Internal(detail.into())
    }

    /// Any code of the client contract with `detail`.
    pub fn code(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::Code {
            code,
            detail: detail.into(),
        }
    }

    /// The `ErrorCode` the client receives.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Refused(_) => ErrorCode::Refused,
            Self::BadPayload(_) => ErrorCode::BadPayload,
            Self::UnknownRoute(_) => ErrorCode::UnknownRoute,
            Self::Unavailable(_) | Self::NothingHappened(_) => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
            Self::Code { code, .. } => *code,
        }
    }

    /// The `ErrorCode` name the client receives, without the prefix; also
    /// a short static label for metrics.
    pub fn code_name(&self) -> &'static str {
        let name = self.error_code().as_str_name();
        name.strip_prefix("ERROR_CODE_").unwrap_or(name)
    }

    /// The detail the client receives.
    pub fn detail(&self) -> &str {
        match self {
            Self::Refused(d)
            | Self::BadPayload(d)
            | Self::UnknownRoute(d)
            | Self::Unavailable(d)
            | Self::NothingHappened(d)
            | Self::Internal(d) => d,
            Self::Code { detail, .. } => detail,
        }
    }
}

/// Shorthand for [`GameError::refused`], so a rule reads as one line:
/// `return Err(refuse("room full"))`.
pub fn refuse(detail: impl Into<String>) -> GameError {
    GameError::refused(detail)
}

/// What a studio's modules registered that cannot run. Collected while
/// modules build and returned together from
/// [`App::start`](super::App::start), so one start-up shows every
/// mistake, each saying what to change.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    /// A module name that is not 1 to 32 bytes of `[a-z0-9_]`.
    #[error("module name \"{0}\" is not 1 to 32 bytes of a-z, 0-9 and '_'; rename the module")]
    BadModule(String),
    /// Two modules with one name.
    #[error("module \"{0}\" is added twice; add each module once")]
    DuplicateModule(String),
    /// A route (or job kind) that breaks the naming rule.
    #[error("route \"{route}\" cannot be registered: {why}")]
    BadRoute {
        /// The route as given.
        route: String,
        /// What is wrong and what is expected.
        why: String,
    },
    /// Two handlers for one route.
    #[error("route \"{0}\" is registered twice; each route has one handler")]
    DuplicateRoute(String),
    /// A room kind registered twice (by name or by type).
    #[error("room kind \"{0}\" is registered twice; register each room kind once")]
    DuplicateRoomKind(String),
    /// A room kind setting out of range.
    #[error("room kind \"{kind}\": {why}")]
    BadRoomKind {
        /// The kind.
        kind: String,
        /// What is wrong.
        why: String,
    },
    /// Something was registered outside a module's `build`, so it has no
    /// module to belong to.
    #[error("\"{0}\" was registered outside a module; register it in a Module's build()")]
    NoModule(String),
    /// Several of the above.
    #[error("{} problems: {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<BuildError>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_names_its_client_code_and_keeps_its_detail() {
        let cases = [
            (refuse("room full"), "REFUSED", "room full"),
            (GameError::BadPayload("x".into()), "BAD_PAYLOAD", "x"),
            (
                GameError::UnknownRoute("a.b".into()),
                "UNKNOWN_ROUTE",
                "a.b",
            ),
            (GameError::unavailable("retry"), "UNAVAILABLE", "retry"),
            (GameError::nothing_happened("again"), "UNAVAILABLE", "again"),
            (GameError::internal("bug"), "INTERNAL", "bug"),
            (
                GameError::code(ErrorCode::NotInRoom, "join first"),
                "NOT_IN_ROOM",
                "join first",
            ),
        ];
        for (e, code, detail) in cases {
            assert_eq!(e.code_name(), code);
            assert_eq!(e.detail(), detail);
        }
    }

    #[test]
    fn only_nothing_happened_promises_nothing_happened() {
        assert!(GameError::nothing_happened("x").is_nothing_happened());
        assert!(!GameError::unavailable("x").is_nothing_happened());
        assert_eq!(
            GameError::unavailable("x").nothing_happened_if_unavailable(),
            GameError::nothing_happened("x")
        );
        assert_eq!(refuse("no").nothing_happened_if_unavailable(), refuse("no"));
    }

    #[test]
    fn many_build_errors_list_every_one() {
        let e = BuildError::Many(vec![
            BuildError::DuplicateRoute("a.b".into()),
            BuildError::BadModule("A".into()),
        ]);
        let text = e.to_string();
        assert!(text.starts_with("2 problems"), "{text}");
        assert!(text.contains("\"a.b\" is registered twice"), "{text}");
        assert!(text.contains("module name \"A\""), "{text}");
    }
}

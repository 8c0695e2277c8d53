//! Route names: what a `GameRequest.route` and a `GamePush.route` may be.
//!
//! The contract (PROTOCOL.md, "Game routes") says a route is 1 to 64 bytes
//! of `[a-z0-9_.]`; anything else gets `UNKNOWN_ROUTE`. Registration is
//! stricter: a registered route is `"<module>.<name>"`, its first segment
//! being the module that registers it, so two modules can never claim one
//! name and a reader can tell from a route which module answers it.

use std::fmt;

use super::error::BuildError;

/// Longest route, in bytes.
pub const MAX_ROUTE: usize = 64;
/// Longest module (or room kind) name, in bytes.
pub const MAX_MODULE: usize = 32;

/// A route name that passed [`RouteName::parse`]: 1 to [`MAX_ROUTE`] bytes
/// of `[a-z0-9_.]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteName(String);

impl RouteName {
    /// Checks `route` against the contract; `None` when a client sending
    /// it should get `UNKNOWN_ROUTE`.
    pub fn parse(route: &str) -> Option<Self> {
        valid_route(route).then(|| Self(route.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The module part: everything before the first `.` (the whole name
    /// if there is none).
    pub fn module(&self) -> &str {
        self.0.split('.').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for RouteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True for 1 to [`MAX_ROUTE`] bytes of `[a-z0-9_.]`: the contract's rule
/// for any route a client sends or a push carries.
pub fn valid_route(route: &str) -> bool {
    crate::api::name::bounded(route, MAX_ROUTE, route_byte)
}

fn route_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.'
}

/// True for a module or room-kind name: 1 to [`MAX_MODULE`] bytes of
/// `[a-z0-9_]` (no dot: the dot separates a module from its names).
pub fn valid_module(name: &str) -> bool {
    crate::api::name::bounded(name, MAX_MODULE, |b| route_byte(b) && b != b'.')
}

/// Checks a route that `module` registers (or pushes under): valid, and
/// `"<module>.<name>"` with a non-empty name.
pub fn check_registered(module: &str, route: &str) -> Result<RouteName, BuildError> {
    let Some(name) = RouteName::parse(route) else {
        return Err(BuildError::BadRoute {
            route: route.to_string(),
            why: format!("a route is 1 to {MAX_ROUTE} bytes of a-z, 0-9, '_' and '.'"),
        });
    };
    let rest = route
        .strip_prefix(module)
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or("");
    if rest.is_empty() || rest.starts_with('.') || rest.ends_with('.') {
        return Err(BuildError::BadRoute {
            route: route.to_string(),
            why: format!("module \"{module}\" registers routes named \"{module}.<name>\""),
        });
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_1_to_64_bytes_of_lowercase_digits_underscore_and_dot() {
        assert!(valid_route("arena.move"));
        assert!(valid_route("a"));
        assert!(valid_route("x_1.y_2.z"));
        assert!(valid_route(&"a".repeat(MAX_ROUTE)));
        assert!(!valid_route(""));
        assert!(!valid_route(&"a".repeat(MAX_ROUTE + 1)));
        for bad in [
            "Arena.move",
            "arena move",
            "arena-move",
            "arena/move",
            "é",
            "a\0",
        ] {
            assert!(!valid_route(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_module_is_the_first_segment() {
        assert_eq!(RouteName::parse("arena.move").unwrap().module(), "arena");
        assert_eq!(RouteName::parse("arena").unwrap().module(), "arena");
        assert_eq!(RouteName::parse("a.b.c").unwrap().module(), "a");
    }

    #[test]
    fn a_module_registers_only_its_own_routes() {
        assert!(check_registered("arena", "arena.move").is_ok());
        assert!(check_registered("arena", "arena.sub.name").is_ok());
        for bad in [
            "chat.say",
            "arena",
            "arena.",
            "arena..x",
            "arenax.move",
            "Arena.move",
        ] {
            assert!(
                check_registered("arena", bad).is_err(),
                "{bad:?} accepted for arena"
            );
        }
    }

    #[test]
    fn module_names_have_no_dot() {
        assert!(valid_module("arena"));
        assert!(valid_module("my_game2"));
        assert!(!valid_module("my.game"));
        assert!(!valid_module(""));
        assert!(!valid_module("Arena"));
        assert!(!valid_module(&"a".repeat(MAX_MODULE + 1)));
    }
}

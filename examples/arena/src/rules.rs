//! The arena's rules, as plain functions the room and the handlers share.

use gamemesh_game_server::api::name;

/// Side of the board: `x` and `y` are in `0..BOARD`.
pub const BOARD: i32 = 100;
/// Players in one room at most; the next join is refused ("room full").
pub const MAX_PLAYERS: usize = 16;
/// Ticks per second.
pub const TICK_HZ: u32 = 20;
/// Longest room name, in bytes.
pub const MAX_ROOM_NAME: usize = 32;

/// True for a room name of 1 to 32 bytes of `[A-Za-z0-9_-]`.
pub fn valid_room(name: &str) -> bool {
    name::bounded(name, MAX_ROOM_NAME, name::word_byte)
}

/// True when a step is -1, 0 or 1 on each axis.
pub fn valid_step(dx: i32, dy: i32) -> bool {
    (-1..=1).contains(&dx) && (-1..=1).contains(&dy)
}

/// Where a player at `(x, y)` ends after the step `(dx, dy)`: clamped to
/// the board.
pub fn step((x, y): (i32, i32), (dx, dy): (i32, i32)) -> (i32, i32) {
    (
        x.saturating_add(dx).clamp(0, BOARD - 1),
        y.saturating_add(dy).clamp(0, BOARD - 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_1_to_32_bytes_of_letters_digits_underscore_and_dash() {
        assert!(valid_room("r1"));
        assert!(valid_room("Blue_Team-2"));
        assert!(valid_room(&"a".repeat(32)));
        for bad in ["", "a b", "a.b", "a:b", "é", "a/b"] {
            assert!(!valid_room(bad), "{bad:?}");
        }
        assert!(!valid_room(&"a".repeat(33)));
    }

    #[test]
    fn steps_are_one_square_at_most() {
        for dx in -1..=1 {
            for dy in -1..=1 {
                assert!(valid_step(dx, dy));
            }
        }
        for (dx, dy) in [(2, 0), (0, -2), (i32::MAX, 0), (0, i32::MIN)] {
            assert!(!valid_step(dx, dy), "({dx}, {dy})");
        }
    }

    #[test]
    fn moves_are_clamped_to_the_board() {
        assert_eq!(step((0, 0), (-1, -1)), (0, 0));
        assert_eq!(step((0, 0), (1, 1)), (1, 1));
        assert_eq!(step((99, 99), (1, 1)), (99, 99));
        assert_eq!(step((99, 0), (1, -1)), (99, 0));
        assert_eq!(step((50, 50), (0, -1)), (50, 49));
    }
}

//! The one rule behind every name game code and clients give things (rooms,
//! data keys, routes, modules): 1 to N bytes from a small alphabet. Each
//! caller keeps its own bound and alphabet; the shape of the check lives
//! here so the rules cannot drift apart (an empty name, or a length counted
//! in chars instead of bytes, were the bugs such copies grow).

/// True for a name of 1 to `max` bytes, each accepted by `allowed`.
pub fn bounded(name: &str, max: usize, allowed: impl Fn(u8) -> bool) -> bool {
    !name.is_empty() && name.len() <= max && name.bytes().all(allowed)
}

/// `[A-Za-z0-9_-]`: the alphabet of names players type (room names).
pub fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// `[A-Za-z0-9_.-]`: a [`word_byte`] or a dot (store keys, where `:`, `{`
/// and `}` would break the key layout).
pub fn dotted_word_byte(b: u8) -> bool {
    word_byte(b) || b == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_one_to_max_bytes_of_the_alphabet() {
        assert!(bounded("a", 3, word_byte));
        assert!(bounded("a-_", 3, word_byte));
        assert!(!bounded("", 3, word_byte));
        assert!(!bounded("abcd", 3, word_byte));
        // Bytes, not chars: "é" is two bytes.
        assert!(!bounded("éé", 3, |_| true));
        assert!(!bounded("a.b", 3, word_byte));
        assert!(bounded("a.b", 3, dotted_word_byte));
        for bad in [b':', b'{', b'}', b' ', b'/'] {
            assert!(!dotted_word_byte(bad), "{}", bad as char);
        }
    }
}

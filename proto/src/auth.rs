//! Login tokens (docs/PROTOCOL.md, "Authentication").
//!
//! A token is `<expiry_unix_seconds>.<hex(HMAC-SHA256(secret, "<user_id>.<expiry>"))>`.
//! It lives in `proto` because it is part of the client contract: the game
//! server verifies tokens, and `test-client` (like a studio's login service)
//! mints them.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused. Every variant answers `INVALID_TOKEN`; the
/// variants exist for the log line.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not `<digits>.<64 hex>`.
    #[error("token is malformed")]
    Malformed,
    /// The expiry is in the past.
    #[error("token expired at {0}")]
    Expired(u64),
    /// The signature does not match the user id and expiry.
    #[error("token signature does not match")]
    BadSignature,
}

fn mac(secret: &[u8], user_id: u64, expiry: u64) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(format!("{user_id}.{expiry}").as_bytes());
    m
}

/// Mints a token for `user_id` valid until `expiry_unix_secs`.
pub fn mint_token(secret: &[u8], user_id: u64, expiry_unix_secs: u64) -> String {
    let sig = mac(secret, user_id, expiry_unix_secs)
        .finalize()
        .into_bytes();
    format!("{expiry_unix_secs}.{}", hex::encode(sig))
}

/// Checks `token` for `user_id` at time `now_unix_secs`. The signature is
/// compared in constant time.
pub fn verify_token(
    secret: &[u8],
    user_id: u64,
    token: &str,
    now_unix_secs: u64,
) -> Result<(), TokenError> {
    let (expiry, sig_hex) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TokenError::Malformed);
    }
    let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
    let sig = hex::decode(sig_hex).map_err(|_| TokenError::Malformed)?;
    if sig.len() != 32 {
        return Err(TokenError::Malformed);
    }
    mac(secret, user_id, expiry)
        .verify_slice(&sig)
        .map_err(|_| TokenError::BadSignature)?;
    if expiry <= now_unix_secs {
        return Err(TokenError::Expired(expiry));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &[u8] = b"secret";

    #[test]
    fn minted_token_verifies() {
        let t = mint_token(S, 42, 2_000);
        assert_eq!(verify_token(S, 42, &t, 1_000), Ok(()));
    }

    #[test]
    fn wrong_user_or_secret_is_forged() {
        let t = mint_token(S, 42, 2_000);
        assert_eq!(
            verify_token(S, 43, &t, 1_000),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify_token(b"other", 42, &t, 1_000),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn expired_token_is_refused() {
        let t = mint_token(S, 42, 2_000);
        assert_eq!(
            verify_token(S, 42, &t, 2_000),
            Err(TokenError::Expired(2_000))
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for t in ["", "abc", "12.zz", "12.abcd", ".00", "-1.00", "1"] {
            assert_eq!(
                verify_token(S, 1, t, 0),
                Err(TokenError::Malformed),
                "{t:?}"
            );
        }
    }
}

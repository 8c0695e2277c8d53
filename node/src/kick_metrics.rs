//! Kicks counted by reason, as both nodes export them
//! (`gamemesh_gateway_kicks_total{reason}`,
//! `gamemesh_game_server_kicks_total{reason}`): one counter per
//! `KickReason` value, registered once, so counting a kick is an index and
//! an atomic add.

use gamemesh_proto::client::KickReason;
use metrics::{counter, Counter};

/// Kick reasons counted by value (`KickReason` has 0..=8); anything else
/// is counted as unspecified.
pub const KICK_REASONS: usize = 9;

/// Where a kick reason is counted: its value, or 0 (unspecified) for one
/// past [`KICK_REASONS`].
pub fn kick_index(reason: KickReason) -> usize {
    usize::try_from(reason as i32)
        .ok()
        .filter(|i| *i < KICK_REASONS)
        .unwrap_or(0)
}

/// The metric label of a kick reason: `slow_consumer` for
/// `KICK_REASON_SLOW_CONSUMER`.
pub fn kick_label(reason: KickReason) -> String {
    let name = reason.as_str_name();
    name.strip_prefix("KICK_REASON_")
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// The counters of one kicks metric, one per reason.
#[derive(Debug, Clone)]
pub struct KickCounters([Counter; KICK_REASONS]);

impl KickCounters {
    /// Registers `name{reason}` for every reason with the process's
    /// recorder (install it first).
    pub fn register(name: &'static str) -> Self {
        Self(std::array::from_fn(|i| {
            let reason = KickReason::try_from(i as i32).unwrap_or(KickReason::Unspecified);
            counter!(name, "reason" => kick_label(reason))
        }))
    }

    /// Counts one kick.
    pub fn kicked(&self, reason: KickReason) {
        self.0[kick_index(reason)].increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot_and_label() {
        let mut labels = std::collections::BTreeSet::new();
        for i in 0..KICK_REASONS {
            let reason = KickReason::try_from(i as i32).expect("a KickReason per slot");
            assert_eq!(kick_index(reason), i);
            labels.insert(kick_label(reason));
        }
        assert_eq!(labels.len(), KICK_REASONS);
        assert!(
            KickReason::try_from(KICK_REASONS as i32).is_err(),
            "KICK_REASONS is behind client.proto's KickReason"
        );
        assert_eq!(kick_label(KickReason::SlowConsumer), "slow_consumer");
    }
}

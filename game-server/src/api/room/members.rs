//! A room's members, in join order, with where each session is.
//!
//! Kept as the very slice the [`Pusher`](crate::api::Pusher) takes, so a
//! push to every member (twenty times a second in the arena) allocates
//! nothing. Lookups scan: rooms are tens of members, where a scan beats a
//! map.

use super::wire::WireMember;
use super::Member;
use crate::api::push::Recipient;

/// The members of one room.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Members {
    /// In join order.
    list: Vec<Recipient>,
}

impl Members {
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The member that is `user`'s session, if any.
    pub(crate) fn get(&self, user: u64) -> Option<&Recipient> {
        self.list.iter().find(|r| r.user_id == user)
    }

    /// True when `user` is a member through exactly `session`.
    pub(crate) fn has(&self, user: u64, session: u64) -> bool {
        self.get(user).is_some_and(|r| r.session_id == session)
    }

    /// Adds `r` at the end (the caller made sure `r.user_id` is absent).
    pub(crate) fn push(&mut self, r: Recipient) {
        debug_assert!(self.get(r.user_id).is_none());
        self.list.push(r);
    }

    /// Removes `user`'s member, keeping the others' order.
    pub(crate) fn remove(&mut self, user: u64) -> Option<Recipient> {
        let i = self.list.iter().position(|r| r.user_id == user)?;
        Some(self.list.remove(i))
    }

    /// Records that `user`'s `session` is now at `node`; true if that
    /// changed anything.
    pub(crate) fn relocate(&mut self, user: u64, session: u64, node: u64) -> bool {
        match self
            .list
            .iter_mut()
            .find(|r| r.user_id == user && r.session_id == session)
        {
            Some(r) if r.node != node => {
                r.node = node;
                true
            }
            _ => false,
        }
    }

    /// Every member with where it is, for pushes.
    pub(crate) fn recipients(&self) -> &[Recipient] {
        &self.list
    }

    /// Every member, in join order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Member> + '_ {
        self.list.iter().map(|r| Member {
            user_id: r.user_id,
            session_id: r.session_id,
        })
    }

    pub(crate) fn to_wire(&self) -> Vec<WireMember> {
        self.list
            .iter()
            .map(|r| WireMember {
                user_id: r.user_id,
                session_id: r.session_id,
                node: r.node,
            })
            .collect()
    }

    pub(crate) fn from_wire(members: &[WireMember]) -> Self {
        let mut m = Self::default();
        for w in members {
            if m.get(w.user_id).is_none() {
                m.push(Recipient {
                    user_id: w.user_id,
                    session_id: w.session_id,
                    node: w.node,
                });
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(user_id: u64, session_id: u64, node: u64) -> Recipient {
        Recipient {
            user_id,
            session_id,
            node,
        }
    }

    #[test]
    fn members_keep_join_order_and_round_trip() {
        let mut m = Members::default();
        m.push(r(3, 30, 1));
        m.push(r(1, 10, 2));
        m.push(r(2, 20, 1));
        assert!(m.has(1, 10));
        assert!(!m.has(1, 11));
        assert_eq!(m.remove(1), Some(r(1, 10, 2)));
        assert_eq!(m.iter().map(|x| x.user_id).collect::<Vec<_>>(), vec![3, 2]);
        assert!(m.relocate(2, 20, 5));
        assert!(!m.relocate(2, 20, 5), "no change the second time");
        assert!(!m.relocate(2, 21, 6), "another session is not moved");
        assert_eq!(m.get(2), Some(&r(2, 20, 5)));
        let back = Members::from_wire(&m.to_wire());
        assert_eq!(back, m);
    }
}

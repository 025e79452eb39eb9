//! The answers given "for this session", kept in memory per (uid,
//! session, profile) and bounded per uid and for all uids together, so
//! that no user can make the daemon keep more than a fixed amount.

use super::grant::Grant;
use std::collections::HashMap;

/// Sessions remembered at once per uid, and bytes of their answers (and
/// names): past either, that uid's least recently used session goes first,
/// never another uid's.
const MAX_SESSIONS_PER_UID: usize = 64;
const MAX_BYTES_PER_UID: usize = 256 << 10;
/// Sessions, and bytes, remembered at once by all uids (a user may have
/// many, through its subordinate ids): past either, a uid's new answers
/// push out its own sessions, or are approved once and not remembered.
pub(super) const MAX_SESSIONS: usize = 4096;
pub(super) const MAX_BYTES: usize = 32 << 20;
/// Answers remembered per session; the oldest goes first.
const MAX_GRANTS: usize = 256;
/// Bytes one remembered answer may take (see [`Grant::bytes`]): a longer
/// command or path approved for the session is approved once, not remembered.
pub(super) const MAX_GRANT_BYTES: usize = 4096;

/// How many answers [`Sessions::remember`] leaves out, and why: too long
/// to remember (see [`Grant::rememberable`]), or no room (all uids together
/// at [`MAX_SESSIONS`] or [`MAX_BYTES`], and nothing of the uid's own left
/// to forget).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct LeftOut {
    pub(super) too_long: usize,
    pub(super) no_room: usize,
}

/// Whose session an answer is remembered for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct SessionKey {
    pub(super) uid: u32,
    pub(super) session: String,
    pub(super) profile: String,
}

/// Session answers, per uid, each uid's bounded on its own (see
/// [`MAX_SESSIONS_PER_UID`]) and all together (see [`MAX_SESSIONS`]).
#[derive(Default)]
pub(super) struct Sessions {
    by_uid: HashMap<u32, UidSessions>,
    /// Counts uses, for the least recently used order.
    tick: u64,
    /// Sessions, and their bytes, of all uids.
    count: usize,
    bytes: usize,
}

/// One uid's sessions, and the bytes they take.
#[derive(Default)]
struct UidSessions {
    sessions: HashMap<SessionKey, Remembered>,
    bytes: usize,
}

/// One session's answers, the bytes they (and its name) take, and its last use.
struct Remembered {
    grants: Vec<Grant>,
    bytes: usize,
    used: u64,
}

/// Bytes a session takes before any answer: its key.
fn key_bytes(key: &SessionKey) -> usize {
    std::mem::size_of::<SessionKey>() + key.session.len() + key.profile.len()
}

impl UidSessions {
    /// Forgets the least recently used session other than `keep`; the
    /// bytes freed, or `None` when there is no other.
    fn forget_oldest(&mut self, keep: &SessionKey) -> Option<usize> {
        let oldest = self
            .sessions
            .iter()
            .filter(|(k, _)| *k != keep)
            .min_by_key(|(_, r)| r.used)
            .map(|(k, _)| k.clone())?;
        let gone = self.sessions.remove(&oldest)?;
        self.bytes -= gone.bytes;
        Some(gone.bytes)
    }

    /// Forgets `key`'s oldest answer; the bytes freed, or `None` when it has none.
    fn forget_first_grant(&mut self, key: &SessionKey) -> Option<usize> {
        let r = self
            .sessions
            .get_mut(key)
            .filter(|r| !r.grants.is_empty())?;
        let freed = r.grants.remove(0).bytes();
        r.bytes -= freed;
        self.bytes -= freed;
        Some(freed)
    }
}

impl Sessions {
    /// `f` of the answers remembered for `key` (none when it has none),
    /// which counts as a use: checked in place, under the caller's lock,
    /// nothing copied.
    pub(super) fn check<R>(&mut self, key: &SessionKey, f: impl FnOnce(&[Grant]) -> R) -> R {
        self.tick += 1;
        let tick = self.tick;
        match self
            .by_uid
            .get_mut(&key.uid)
            .and_then(|u| u.sessions.get_mut(key))
        {
            Some(r) => {
                r.used = tick;
                f(&r.grants)
            }
            None => f(&[]),
        }
    }

    /// Remembers `grants` for `key`, making room within the bounds by
    /// forgetting the same uid's least recently used sessions, then this
    /// session's oldest answers; never another uid's. Returns how many of
    /// `grants` are not remembered, and why.
    pub(super) fn remember(&mut self, key: SessionKey, grants: &[Grant]) -> LeftOut {
        self.tick += 1;
        let Sessions {
            by_uid,
            tick,
            count,
            bytes,
        } = self;
        let user = by_uid.entry(key.uid).or_default();
        let over = |user: &UidSessions, all: usize, more: usize| {
            user.bytes + more > MAX_BYTES_PER_UID || all + more > MAX_BYTES
        };
        if !user.sessions.contains_key(&key) {
            let need = key_bytes(&key);
            while user.sessions.len() >= MAX_SESSIONS_PER_UID
                || *count >= MAX_SESSIONS
                || over(user, *bytes, need)
            {
                match user.forget_oldest(&key) {
                    Some(freed) => {
                        *count -= 1;
                        *bytes -= freed;
                    }
                    None => {
                        if user.sessions.is_empty() {
                            by_uid.remove(&key.uid);
                        }
                        let too_long = grants.iter().filter(|g| !g.rememberable()).count();
                        return LeftOut {
                            too_long,
                            no_room: grants.len() - too_long,
                        };
                    }
                }
            }
            user.sessions.insert(
                key.clone(),
                Remembered {
                    grants: Vec::new(),
                    bytes: need,
                    used: 0,
                },
            );
            user.bytes += need;
            *count += 1;
            *bytes += need;
        }
        if let Some(r) = user.sessions.get_mut(&key) {
            r.used = *tick;
        }
        let mut left_out = LeftOut::default();
        for g in grants {
            let known = user
                .sessions
                .get(&key)
                .is_some_and(|r| r.grants.contains(g));
            if known {
                continue;
            }
            if !g.rememberable() {
                left_out.too_long += 1;
                continue;
            }
            let need = g.bytes();
            let full = user
                .sessions
                .get(&key)
                .is_some_and(|r| r.grants.len() >= MAX_GRANTS);
            if full {
                if let Some(freed) = user.forget_first_grant(&key) {
                    *bytes -= freed;
                }
            }
            while over(user, *bytes, need) {
                if let Some(freed) = user.forget_oldest(&key) {
                    *count -= 1;
                    *bytes -= freed;
                } else if let Some(freed) = user.forget_first_grant(&key) {
                    *bytes -= freed;
                } else {
                    break;
                }
            }
            let room = !over(user, *bytes, need);
            match user.sessions.get_mut(&key) {
                Some(r) if room => {
                    r.grants.push(g.clone());
                    r.bytes += need;
                    user.bytes += need;
                    *bytes += need;
                }
                _ => left_out.no_room += 1,
            }
        }
        left_out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::prefix;
    use super::*;

    fn key(uid: u32, session: &str) -> SessionKey {
        SessionKey {
            uid,
            session: session.into(),
            profile: "p".into(),
        }
    }

    fn remembered(s: &mut Sessions, k: &SessionKey) -> Vec<Grant> {
        s.check(k, <[Grant]>::to_vec)
    }

    /// What the bounds count, recounted from what is kept.
    fn assert_counted(s: &Sessions) {
        let mut all = 0;
        for u in s.by_uid.values() {
            let of_uid: usize = u.sessions.values().map(|r| r.bytes).sum();
            assert_eq!(u.bytes, of_uid);
            for (k, r) in &u.sessions {
                let of_session: usize = r.grants.iter().map(Grant::bytes).sum();
                assert_eq!(r.bytes, key_bytes(k) + of_session);
            }
            all += of_uid;
        }
        assert_eq!(s.bytes, all);
        let count: usize = s.by_uid.values().map(|u| u.sessions.len()).sum();
        assert_eq!(s.count, count);
    }

    #[test]
    fn sessions_are_kept_apart_and_bounded() {
        let mut s = Sessions::default();
        let none = LeftOut::default();
        assert_eq!(s.remember(key(1, "a"), &[Grant::Unsandboxed]), none);
        assert_eq!(remembered(&mut s, &key(1, "a")), vec![Grant::Unsandboxed]);
        assert!(remembered(&mut s, &key(1, "b")).is_empty());
        assert!(remembered(&mut s, &key(2, "a")).is_empty());
        let many: Vec<Grant> = (0..MAX_GRANTS + 3)
            .map(|i| Grant::Network(format!("h{i}.test")))
            .collect();
        assert_eq!(s.remember(key(1, "a"), &many), none);
        let kept = remembered(&mut s, &key(1, "a"));
        assert_eq!(kept.len(), MAX_GRANTS);
        assert_eq!(kept.last(), many.last());
        assert_counted(&s);
    }

    /// A command too long to remember is approved once: the session keeps
    /// the others, and says how many it left out.
    #[test]
    fn a_grant_too_long_is_not_remembered() {
        let mut s = Sessions::default();
        let long = Grant::Command(vec!["x".repeat(1500); 1000]);
        let short = Grant::Command(prefix(&["make"]));
        assert!(!long.rememberable() && short.rememberable());
        let left_out = LeftOut {
            too_long: 1,
            no_room: 0,
        };
        assert_eq!(s.remember(key(1, "a"), &[long, short.clone()]), left_out);
        assert_eq!(remembered(&mut s, &key(1, "a")), vec![short]);
        assert!(s.bytes < MAX_GRANT_BYTES * 2);
        assert_counted(&s);
    }

    /// A uid's sessions push out its own least recently used ones, never
    /// another uid's, and its bytes stay within its bound.
    #[test]
    fn each_uid_is_bounded_on_its_own() {
        let mut s = Sessions::default();
        s.remember(key(2, "theirs"), &[Grant::Unsandboxed]);
        s.remember(key(1, "first"), &[Grant::Unsandboxed]);
        s.remember(key(1, "second"), &[Grant::Unsandboxed]);
        // Used again: the oldest is now "second".
        remembered(&mut s, &key(1, "first"));
        for i in 0..MAX_SESSIONS_PER_UID - 1 {
            s.remember(key(1, &format!("s{i}")), &[Grant::Unsandboxed]);
        }
        assert_eq!(s.by_uid[&1].sessions.len(), MAX_SESSIONS_PER_UID);
        assert!(remembered(&mut s, &key(1, "second")).is_empty());
        assert_eq!(remembered(&mut s, &key(1, "first")), [Grant::Unsandboxed]);
        assert_eq!(remembered(&mut s, &key(2, "theirs")), [Grant::Unsandboxed]);
        // Bytes: many sessions of large (but rememberable) answers.
        let big = |i: usize| Grant::Command(vec![format!("{i:0>3000}")]);
        for i in 0..MAX_SESSIONS_PER_UID * 4 {
            let grants: Vec<Grant> = (0..8).map(|j| big(i * 8 + j)).collect();
            let left_out = s.remember(key(1, &format!("b{i}")), &grants);
            assert_eq!(left_out, LeftOut::default());
            assert!(s.by_uid[&1].bytes <= MAX_BYTES_PER_UID);
        }
        let last = format!("b{}", MAX_SESSIONS_PER_UID * 4 - 1);
        assert_eq!(remembered(&mut s, &key(1, &last)).len(), 8);
        // One session alone past the uid's bytes drops its own oldest answers.
        let grants: Vec<Grant> = (0..MAX_GRANTS).map(|j| big(100_000 + j)).collect();
        s.remember(key(1, "one"), &grants);
        let kept = remembered(&mut s, &key(1, "one"));
        assert_eq!(kept.last(), grants.last());
        assert!(kept.len() < grants.len());
        assert_eq!(s.by_uid[&1].sessions.len(), 1);
        assert!(s.by_uid[&1].bytes <= MAX_BYTES_PER_UID);
        assert_eq!(remembered(&mut s, &key(2, "theirs")), [Grant::Unsandboxed]);
        assert_counted(&s);
    }

    /// Past the bound of all uids together, a uid with no session to give
    /// up has its answers approved once, not remembered.
    #[test]
    fn all_uids_together_are_bounded_without_pushing_out_others() {
        let mut s = Sessions::default();
        for uid in 0..(MAX_SESSIONS / MAX_SESSIONS_PER_UID) as u32 {
            for i in 0..MAX_SESSIONS_PER_UID {
                s.remember(key(uid, &format!("s{i}")), &[Grant::Unsandboxed]);
            }
        }
        assert_eq!(s.count, MAX_SESSIONS);
        let newcomer = 1_000_000;
        let left_out = LeftOut {
            too_long: 0,
            no_room: 1,
        };
        assert_eq!(
            s.remember(key(newcomer, "a"), &[Grant::Unsandboxed]),
            left_out
        );
        assert!(!s.by_uid.contains_key(&newcomer));
        assert_eq!(s.count, MAX_SESSIONS);
        // A uid that has sessions gives up its own oldest.
        let left_out = s.remember(key(0, "new"), &[Grant::Unsandboxed]);
        assert_eq!(left_out, LeftOut::default());
        assert!(remembered(&mut s, &key(0, "s0")).is_empty());
        assert_eq!(remembered(&mut s, &key(1, "s0")), [Grant::Unsandboxed]);
        assert_counted(&s);
    }

    /// Answers left out for lack of room are told apart from those too
    /// long, whether the session cannot be made or its answers do not fit.
    #[test]
    fn answers_without_room_are_counted_apart_from_those_too_long() {
        let long = Grant::Command(vec!["x".repeat(1500); 1000]);
        let big = |i: usize| Grant::Command(vec![format!("{i:-<3000}")]);
        // No session can be made: all uids together are at MAX_SESSIONS.
        let mut s = Sessions::default();
        for uid in 0..MAX_SESSIONS as u32 {
            s.remember(key(uid, "s"), &[Grant::Unsandboxed]);
        }
        let left_out = s.remember(key(1_000_000, "a"), &[long.clone(), big(0), big(1)]);
        assert_eq!(
            left_out,
            LeftOut {
                too_long: 1,
                no_room: 2
            }
        );
        assert_counted(&s);
        // The session is there, its answers do not fit: all uids together
        // are at MAX_BYTES, and it has no answer of its own to give up.
        let mut s = Sessions::default();
        let newcomer = key(1_000_000, "a");
        assert_eq!(s.remember(newcomer.clone(), &[]), LeftOut::default());
        for uid in 0..(MAX_BYTES / MAX_BYTES_PER_UID + 8) as u32 {
            let grants: Vec<Grant> = (0..100).map(|j| big(uid as usize * 100 + j)).collect();
            s.remember(key(uid, "s"), &grants);
        }
        assert!(s.bytes + big(0).bytes() > MAX_BYTES);
        let left_out = s.remember(newcomer.clone(), &[big(0), long]);
        assert_eq!(
            left_out,
            LeftOut {
                too_long: 1,
                no_room: 1
            }
        );
        assert!(remembered(&mut s, &newcomer).is_empty());
        assert_counted(&s);
    }
}

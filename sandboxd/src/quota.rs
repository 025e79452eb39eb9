//! Slots counted per user and in all, each released when dropped.
//! Descriptors and threads are the daemon's, shared by everyone: API
//! connections, audit streams and sandboxes' network connections are each
//! bounded per user, so that one user cannot take them all from the
//! others, and in all, so that together they leave the daemon what it
//! needs for everything else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// At most `max` slots held at once per uid, and `total` by all.
#[derive(Debug)]
pub struct Quota {
    max: usize,
    total: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    by_uid: HashMap<u32, usize>,
    all: usize,
}

/// One slot of `uid`, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    quota: Arc<Quota>,
    uid: u32,
}

impl Quota {
    pub fn new(max: usize, total: usize) -> Arc<Quota> {
        Arc::new(Quota {
            max,
            total,
            held: Mutex::new(Held::default()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Slots `uid` holds, and all hold, now.
    pub fn held(&self, uid: u32) -> (usize, usize) {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        (held.by_uid.get(&uid).copied().unwrap_or(0), held.all)
    }

    /// A slot for `uid`, unless it holds `max` already or all hold `total`.
    pub fn take(self: &Arc<Self>, uid: u32) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.all >= self.total {
            return None;
        }
        let n = held.by_uid.entry(uid).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        held.all += 1;
        Some(Slot {
            quota: Arc::clone(self),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.quota.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                held.by_uid.remove(&self.uid);
            }
            held.all -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Quota;

    #[test]
    fn each_uid_has_its_own_bound_all_one_and_a_dropped_slot_is_free_again() {
        let q = Quota::new(2, 3);
        let a: Vec<_> = (0..2).map(|_| q.take(1000).unwrap()).collect();
        assert!(q.take(1000).is_none());
        let b = q.take(1001).unwrap();
        // Three held in all: a third user gets none.
        assert!(q.take(1002).is_none());
        assert_eq!((q.held(1000), q.held(1002)), ((2, 3), (0, 3)));
        drop(a);
        assert!(q.take(1000).is_some());
        assert!(q.take(1002).is_some());
        drop(b);
        let held = q.held.lock().unwrap();
        assert!(held.by_uid.is_empty() && held.all == 0);
    }
}

//! Slots counted per user, each released when dropped. Descriptors are
//! the daemon's, shared by everyone: a user's API connections and their
//! sandboxes' network connections are each bounded, so that one user
//! cannot take them all from the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// At most `max` slots held at once per uid.
#[derive(Debug)]
pub struct Quota {
    max: usize,
    held: Mutex<HashMap<u32, usize>>,
}

/// One slot of `uid`, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    quota: Arc<Quota>,
    uid: u32,
}

impl Quota {
    pub fn new(max: usize) -> Arc<Quota> {
        Arc::new(Quota {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for `uid`, unless it holds `max` already.
    pub fn take(self: &Arc<Self>, uid: u32) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(uid).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            quota: Arc::clone(self),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.quota.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Quota;

    #[test]
    fn each_uid_has_its_own_bound_and_a_dropped_slot_is_free_again() {
        let q = Quota::new(2);
        let a: Vec<_> = (0..2).map(|_| q.take(1000).unwrap()).collect();
        assert!(q.take(1000).is_none());
        let b = q.take(1001).unwrap();
        drop(a);
        assert!(q.take(1000).is_some());
        drop(b);
        assert!(q.held.lock().unwrap().is_empty());
    }
}

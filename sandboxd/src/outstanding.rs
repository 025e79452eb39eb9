//! Work the daemon waits for at exit, past its runtime's shutdown: threads
//! and clean-ups that run on their own and must be done before the process
//! ends (what they queued for the audit log written, the cgroups of ended
//! sandboxes removed).

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many pieces of one kind of work are still running.
#[derive(Debug, Default)]
pub struct Outstanding {
    running: Mutex<usize>,
    ended: Condvar,
}

impl Outstanding {
    pub const fn new() -> Outstanding {
        Outstanding {
            running: Mutex::new(0),
            ended: Condvar::new(),
        }
    }

    /// Counts one piece of work until the guard is dropped (also when its
    /// thread panics).
    pub fn start(&'static self) -> Counted {
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Counted(self)
    }

    /// Waits up to `within` for every piece to end; whether they did.
    pub fn wait(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut n = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = self
                .ended
                .wait_timeout(n, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// One piece of [`Outstanding`] work, counted while it lives.
#[derive(Debug)]
pub struct Counted(&'static Outstanding);

impl Drop for Counted {
    fn drop(&mut self) {
        *self
            .0
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner) -= 1;
        self.0.ended.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wait ends when the last piece does, and gives up at its limit
    /// while one is left.
    #[test]
    fn the_wait_ends_with_the_last_piece_or_at_its_limit() {
        static WORK: Outstanding = Outstanding::new();
        assert!(WORK.wait(Duration::ZERO));
        let (a, b) = (WORK.start(), WORK.start());
        assert!(!WORK.wait(Duration::from_millis(50)));
        drop(a);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(b);
        });
        assert!(WORK.wait(Duration::from_secs(10)));
        t.join().unwrap();
    }
}

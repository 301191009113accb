//! One lock per key, created on first use and forgotten once nobody holds it.
//! The service keeps one per share (membership changes against reads) and
//! sharing one per MLS group; both use this map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// How many entries the map may hold before idle locks are dropped.
const PRUNE_ABOVE: usize = 4096;

/// A map from keys to shared locks of type `L`.
#[derive(Debug)]
pub struct KeyedLocks<L> {
    locks: Mutex<HashMap<String, Arc<L>>>,
}

impl<L> Default for KeyedLocks<L> {
    fn default() -> Self {
        Self {
            locks: Mutex::new(HashMap::new()),
        }
    }
}

impl<L: Default> KeyedLocks<L> {
    /// The lock of `key`; callers lock it for as long as they need.
    pub fn get(&self, key: &str) -> Arc<L> {
        self.get_or(key, L::default)
    }
}

impl<L> KeyedLocks<L> {
    /// The lock of `key`, made by `make` if it is new.
    pub fn get_or(&self, key: &str, make: impl FnOnce() -> L) -> Arc<L> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if locks.len() > PRUNE_ABOVE {
            // Forget locks nobody holds, so the map stays small.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        if let Some(l) = locks.get(key) {
            return l.clone();
        }
        let l = Arc::new(make());
        locks.insert(key.to_owned(), l.clone());
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_one_lock_and_idle_locks_are_forgotten() {
        let map: KeyedLocks<Mutex<()>> = KeyedLocks::default();
        let a = map.get("a");
        assert!(Arc::ptr_eq(&a, &map.get("a")));
        assert!(!Arc::ptr_eq(&a, &map.get("b")));
        for i in 0..=PRUNE_ABOVE {
            drop(map.get(&i.to_string()));
        }
        drop(map.get("last"));
        let held = map.locks.lock().expect("lock").len();
        assert!(held < 10, "idle locks were pruned ({held} left)");
        assert!(Arc::ptr_eq(&a, &map.get("a")), "a held lock is kept");
    }
}

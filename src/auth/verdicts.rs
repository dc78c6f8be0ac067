//! A bounded memory of token verdicts, each trusted until a time of its own: the session
//! store remembers what its table said of a token, the verifier which user a signed JWT
//! names. Raw tokens are never kept: an entry is keyed by its token's SHA-256.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// What identifies a token in the memory: its SHA-256.
pub(super) type TokenKey = [u8; 32];

/// The key of `token`.
pub(super) fn key_of(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

/// Verdicts of type `V`, at most `capacity` of them: when full, the expired ones go, and
/// all of them if none had expired.
pub(super) struct Verdicts<V> {
    entries: Mutex<HashMap<TokenKey, (V, Instant)>>,
    capacity: usize,
}

impl<V: Clone> Verdicts<V> {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The verdict on `key`, while it is still trusted.
    pub(super) fn get(&self, key: &TokenKey) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(verdict, _)| verdict.clone())
    }

    /// Remembers `verdict` on `key` for `ttl` from now; with no time to trust it, it is
    /// not kept at all.
    pub(super) fn remember(&self, key: TokenKey, verdict: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (verdict, now + ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_lasts_its_time_and_a_full_memory_drops_the_expired_first() {
        let verdicts = Verdicts::new(2);
        verdicts.remember(key_of("a"), 1, Duration::from_secs(60));
        verdicts.remember(key_of("never"), 5, Duration::ZERO);
        verdicts.remember(key_of("gone"), 2, Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(verdicts.get(&key_of("never")), None, "no time to trust it");
        assert_eq!(verdicts.get(&key_of("a")), Some(1));
        assert_eq!(verdicts.get(&key_of("gone")), None, "expired");
        assert_eq!(verdicts.get(&key_of("b")), None, "never seen");
        // Full: the expired entry makes room, the live one stays.
        verdicts.remember(key_of("b"), 3, Duration::from_secs(60));
        assert_eq!(verdicts.get(&key_of("a")), Some(1));
        assert_eq!(verdicts.get(&key_of("b")), Some(3));
        // Full of live entries: all go.
        verdicts.remember(key_of("c"), 4, Duration::from_secs(60));
        assert_eq!(verdicts.get(&key_of("a")), None);
        assert_eq!(verdicts.get(&key_of("c")), Some(4));
    }
}

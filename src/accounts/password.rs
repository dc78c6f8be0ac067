//! Passwords exactly as Better Auth stores them, hashed on a bounded pool.
//!
//! The stored form is `salt:key`: `salt` is 16 random bytes as 32 lowercase hex
//! characters, and `key` is scrypt (N = 16384, r = 16, p = 1, 64 bytes) of the password's
//! NFKC form, keyed by the salt's hex *text* (not its bytes), as 128 hex characters. A
//! hash written by Better Auth's Node server verifies here, and the reverse.
//!
//! One scrypt of these parameters takes 32 MiB and tens of milliseconds of one core, so
//! hashes never run on the request workers: `at_once` threads of their own compute them,
//! at a lower scheduling priority (so a flood of sign-ins takes the CPU the other routes
//! leave), a bounded number wait, and beyond that the caller is told to come back later
//! (503 with `Retry-After`) instead of queueing without end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use subtle::ConstantTimeEq as _;
use unicode_normalization::UnicodeNormalization as _;

/// Better Auth's `minPasswordLength` and `maxPasswordLength`, in UTF-16 code units (what
/// JavaScript's `string.length` counts), before normalisation.
pub const MIN_LENGTH: usize = 8;
/// See [`MIN_LENGTH`].
pub const MAX_LENGTH: usize = 128;

/// Hashes that may wait for a place, per place.
const WAITING_PER_SLOT: usize = 16;
/// Longest wait for a hash (queued and computed) before the caller is turned away.
const WAIT_LIMIT: Duration = Duration::from_secs(5);

/// JavaScript's `string.length`: UTF-16 code units.
pub fn js_length(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Why a hash was not computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Every place and the queue are taken, or the wait ran out: try again after this.
    RetryAfter(u64),
}

/// Better Auth's scrypt parameters: log2(16384) = 14, r = 16, p = 1, a 64-byte key.
fn params() -> Result<scrypt::Params, scrypt::errors::InvalidParams> {
    scrypt::Params::new(14, 16, 1, 64)
}

fn derive(password: &str, salt_hex: &str, params: &scrypt::Params) -> [u8; 64] {
    let normalized: String = password.nfkc().collect();
    let mut key = [0u8; 64];
    // The output length matches the parameters, the only way this call can fail.
    let _ = scrypt::scrypt(normalized.as_bytes(), salt_hex.as_bytes(), params, &mut key);
    key
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    out
}

/// A new stored hash of `password` (blocking: call through [`Hasher`]).
fn hash_now(password: &str, params: &scrypt::Params) -> String {
    let mut salt = [0u8; 16];
    super::ids::fill_random(&mut salt);
    hash_with_salt(password, &hex(&salt), params)
}

fn hash_with_salt(password: &str, salt_hex: &str, params: &scrypt::Params) -> String {
    format!("{salt_hex}:{}", hex(&derive(password, salt_hex, params)))
}

/// Whether `password` matches `stored` (blocking: call through [`Hasher`]). A stored value
/// that is not `salt:key` never matches, but costs the same hash.
fn verify_now(password: &str, stored: &str, params: &scrypt::Params) -> bool {
    let (salt, key) = match stored.split_once(':') {
        Some((salt, key)) if !salt.is_empty() && !key.is_empty() => (salt, key),
        _ => {
            let _ = derive(password, "00000000000000000000000000000000", params);
            return false;
        }
    };
    let computed = hex(&derive(password, salt, params));
    computed
        .as_bytes()
        .ct_eq(key.to_ascii_lowercase().as_bytes())
        .into()
}

/// A hash to compute, handed to a hashing thread.
type Job = Box<dyn FnOnce(&scrypt::Params) + Send>;

/// The hashing threads' niceness (Linux, 0 to 19) where `SCHED_IDLE` is refused: with
/// every core busy, a flood of sign-ins then takes a tenth of the time, not half of it.
const NICENESS: i32 = 10;

/// The bounded pool password hashes run on: `at_once` threads of their own, at a lower
/// priority than the request workers, fed through a queue of `at_once × 16` places.
#[derive(Debug)]
pub struct Hasher {
    jobs: std::sync::mpsc::SyncSender<Job>,
    at_once: usize,
}

/// Lowers the calling thread's priority (on Linux, scheduling policy and niceness are per
/// thread): `SCHED_IDLE`, so that a request worker or a PostgreSQL backend waking up takes
/// the core from a hash at once, and niceness as the fallback where that policy is refused.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
        let idle = thread_priority::set_thread_priority_and_policy(
            thread_priority::thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        );
        if idle.is_ok() {
            return;
        }
        if let Err(error) =
            rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICENESS)
        {
            tracing::debug!(%error, "a password hashing thread keeps the normal priority");
        }
    }
}

impl Hasher {
    /// A pool that computes at most `at_once` hashes at a time.
    pub fn new(at_once: usize) -> Result<Self, String> {
        let at_once = at_once.max(1);
        let params = params().map_err(|e| format!("scrypt's parameters: {e}"))?;
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(at_once * WAITING_PER_SLOT);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..at_once {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("password-hash-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only to take the next job, not while hashing.
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(&params),
                            // The service is gone.
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| format!("a password hashing thread cannot start: {e}"))?;
        }
        Ok(Self { jobs, at_once })
    }

    /// How many hashes run at once.
    pub fn at_once(&self) -> usize {
        self.at_once
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&scrypt::Params) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |params| {
            // Its caller gave up waiting: the hash would be for nobody.
            if !answer.is_closed() {
                let _ = answer.send(work(params));
            }
        });
        if self.jobs.try_send(job).is_err() {
            tracing::warn!("password hash refused: the queue is full");
            return Err(Busy::RetryAfter(1));
        }
        match tokio::time::timeout(WAIT_LIMIT, answered).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(Busy::RetryAfter(1)),
            Err(_) => {
                tracing::warn!("password hash refused: not done within the wait limit");
                Err(Busy::RetryAfter(WAIT_LIMIT.as_secs()))
            }
        }
    }

    /// A new stored hash of `password`.
    pub async fn hash(&self, password: &str) -> Result<String, Busy> {
        let password = password.to_owned();
        self.run(move |params| hash_now(&password, params)).await
    }

    /// Whether `password` matches `stored`; with no stored hash (an unknown email, an
    /// account without a password), the same work is done and the answer is no.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, Busy> {
        let password = password.to_owned();
        match stored {
            Some(stored) => {
                let stored = stored.to_owned();
                self.run(move |params| verify_now(&password, &stored, params))
                    .await
            }
            None => {
                self.run(move |params| {
                    let _ = hash_now(&password, params);
                    false
                })
                .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> scrypt::Params {
        params().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Better Auth 1.7.25's hash of `password123`, from its own server.
    const NODE_HASH: &str = "34669ef70c73d4a171be6e4e82efd806:e6f560632b1561fd9342497e8884a386df8d84e09feddc587f6ac2a9ad45b2793c35b4cb013b516190096242745114d7328a83d1e1c053c3c006bf6d92a552ad";

    /// The scheduling policy and niceness of the thread that calls it (Linux).
    #[cfg(target_os = "linux")]
    fn own_scheduling() -> (u32, i32) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // Fields 19 (nice) and 41 (policy), counted from the state, field 3.
        let nice = fields.get(16).and_then(|f| f.parse().ok()).unwrap_or(0);
        let policy = fields
            .get(38)
            .and_then(|f| f.parse().ok())
            .unwrap_or(u32::MAX);
        (policy, nice)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn hashes_run_below_the_request_workers_priority() {
        const SCHED_OTHER: u32 = 0;
        const SCHED_IDLE: u32 = 5;
        let before = own_scheduling();
        let hasher = Hasher::new(2).unwrap_or_else(|e| panic!("{e}"));
        let (seen, heard) = std::sync::mpsc::channel();
        for _ in 0..2 {
            let seen = seen.clone();
            let job: Job = Box::new(move |_| {
                let _ = seen.send(own_scheduling());
            });
            assert!(hasher.jobs.try_send(job).is_ok());
        }
        for _ in 0..2 {
            let scheduling = heard
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                scheduling.0 == SCHED_IDLE || scheduling == (SCHED_OTHER, NICENESS),
                "a hashing thread runs with policy and niceness {scheduling:?}"
            );
        }
        assert_eq!(own_scheduling(), before, "the caller keeps its own");
    }

    #[test]
    fn a_hash_made_by_better_auth_verifies_and_is_reproduced() {
        assert!(verify_now("password123", NODE_HASH, &p()));
        assert!(!verify_now("password124", NODE_HASH, &p()));
        let salt = NODE_HASH
            .split_once(':')
            .map(|(salt, _)| salt)
            .unwrap_or("");
        assert_eq!(hash_with_salt("password123", salt, &p()), NODE_HASH);
    }

    #[test]
    fn new_hashes_have_better_auths_shape_and_verify() {
        let stored = hash_now("pässwörd-ﬁ-123", &p());
        let (salt, key) = stored.split_once(':').unwrap_or(("", ""));
        assert_eq!(salt.len(), 32);
        assert_eq!(key.len(), 128);
        assert!(stored
            .bytes()
            .all(|b| b == b':' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        // NFKC: the ligature and its letters are one password.
        assert!(verify_now("pässwörd-fi-123", &stored, &p()));
        assert_ne!(
            hash_now("pässwörd-ﬁ-123", &p()),
            stored,
            "a new salt each time"
        );
    }

    #[test]
    fn malformed_stored_values_never_match() {
        for stored in ["", ":", "abc", "abc:", ":abc"] {
            assert!(!verify_now("password123", stored, &p()), "{stored:?}");
        }
    }

    #[test]
    fn lengths_are_counted_as_javascript_counts_them() {
        assert_eq!(js_length("password"), 8);
        assert_eq!(js_length("😀"), 2);
        assert_eq!(js_length(&"😀".repeat(65)), 130);
    }
}

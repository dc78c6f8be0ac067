//! Bounded deletes of what has outlived its keep (old events, expired idempotency keys):
//! short statements of at most [`BATCH`] rows, at most [`ROUNDS`] of them a round with a
//! pause between for the writes; `crate::periodic::every` runs one round at start and
//! then periodically until shutdown.
//! Several instances may prune at once: each statement skips rows another one is deleting.

use std::future::Future;
use std::time::Duration;

/// Rows one statement deletes at most.
pub const BATCH: i64 = 1_000;
/// Statements a round runs at most, so one round stays short.
pub const ROUNDS: usize = 100;
/// The pause between two statements of a round.
const PAUSE: Duration = Duration::from_millis(10);

/// One round: `delete(BATCH)` until it deletes fewer than a batch, fails, or ran
/// [`ROUNDS`] times. Returns how many rows went; a failure is logged (naming `what`) and
/// ends the round, the next round goes on from there.
pub async fn round<F, Fut>(what: &'static str, mut delete: F) -> u64
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<u64, sqlx::Error>>,
{
    let mut deleted = 0_u64;
    for statement in 0..ROUNDS {
        if statement > 0 {
            tokio::time::sleep(PAUSE).await;
        }
        match delete(BATCH).await {
            Ok(done) => {
                deleted += done;
                if done < BATCH.unsigned_abs() {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, what, "old rows could not be deleted; retrying later");
                break;
            }
        }
    }
    deleted
}

//! [`RedisSettlement`]: a saga state saved and its progress written by one
//! script.

use std::fmt;
use std::sync::LazyLock;

use async_trait::async_trait;
use dtask_core::infra::{ProgressWrite, StateWithProgress, StoredState};
use dtask_core::progress::TaskProgress;
use dtask_core::{Error, Result, TaskId};
use redis::Script;

use crate::conn::redis_error;
use crate::progress::{RedisProgressTracker, scripts};
use crate::state::{RedisStateStore, SAVE_FUNCTION, fenced};

/// Saves the state as the state store's `SAVE` does and, once saved,
/// stores the progress as the tracker's `UPDATE` does.
///
/// `KEYS`: the state's hash, the progress hash, and (but on a Redis
/// Cluster, where it lives in another slot) the expiry set. `ARGV`: the
/// four arguments of `save` after the hash, then the seven of `update`
/// after its keys. Returns `{'fenced', stored fence}` when the save was
/// refused (nothing written), else `{'saved', update's answer}`.
static SAVE_WITH_PROGRESS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{prelude}{SAVE_FUNCTION}
local refused = save(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if refused then return {{ 'fenced', refused }} end
local shown = update(KEYS[2], KEYS[3], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
return {{ 'saved', tostring(shown) }}
",
        prelude = scripts::PRELUDE,
    ))
});

/// The [`RedisStateStore`] and the [`RedisProgressTracker`] of one
/// [`RedisBackends`](crate::RedisBackends) as one
/// [`StateWithProgress`]: a settlement's save and its progress write are
/// one script, one round trip, applied whole or not at all. A task's state
/// and progress hashes share its hash tag, so on a Redis Cluster too the
/// script touches one slot (an ended task's entry in the listing's expiry
/// set is then written after it, as the tracker writes it).
///
/// Built by [`RedisBackends::settlement`](crate::RedisBackends::settlement).
#[derive(Clone)]
pub struct RedisSettlement {
    state: RedisStateStore,
    progress: RedisProgressTracker,
}

impl RedisSettlement {
    pub(crate) fn new(state: RedisStateStore, progress: RedisProgressTracker) -> Self {
        Self { state, progress }
    }
}

impl fmt::Debug for RedisSettlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettlement")
            .field("state", &self.state)
            .field("progress", &self.progress)
            .finish()
    }
}

#[async_trait]
impl StateWithProgress for RedisSettlement {
    /// # Errors
    /// [`Error::Fenced`] when a larger fencing token saved before;
    /// [`Error::Unsupported`] for an in-memory payload.
    async fn save_with_progress(
        &self,
        task_id: TaskId,
        state: StoredState,
        progress: &TaskProgress,
    ) -> Result<ProgressWrite> {
        if progress.task_id != task_id {
            return Err(Error::invalid(
                "progress",
                format!(
                    "the progress of task {} saved with task {task_id}'s state",
                    progress.task_id
                ),
            ));
        }
        let mut invocation = SAVE_WITH_PROGRESS.prepare_invoke();
        self.state.add_save(&mut invocation, task_id, &state)?;
        self.progress.add_update(&mut invocation, progress)?;
        let (outcome, value): (String, String) = invocation
            .invoke_async(&mut self.state.commands())
            .await
            .map_err(redis_error)?;
        if outcome == "fenced" {
            return Err(fenced(&state, &value));
        }
        Ok(match value.as_str() {
            "2" => {
                self.progress.list_expiry(progress).await;
                ProgressWrite::Stored
            }
            "1" => ProgressWrite::Stale,
            _ => ProgressWrite::UnknownTask,
        })
    }
}

//! A task's live stream: the current snapshot, then the published ones
//! that are newer, until the terminal one.

use std::sync::Arc;
use std::time::Duration;

use dtask_core::TaskId;
use dtask_core::infra::ProgressStream;
use dtask_core::progress::TaskProgress;
use futures::StreamExt;
use futures::stream;

use super::Reader;
use super::hub::{Event, Subscription};

/// How often a stream tries to re-read its task after a reconnection.
const RESYNC_ATTEMPTS: u32 = 10;

/// What a stream has yielded last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    revision: u64,
    cancel_requested: bool,
    terminal: bool,
}

impl Seen {
    fn of(progress: &TaskProgress) -> Self {
        Self {
            revision: progress.revision,
            cancel_requested: progress.cancel_requested,
            terminal: progress.is_terminal(),
        }
    }

    /// Whether `next` is a change after this one: a later revision, the
    /// terminal snapshot (which wins over any running one), or a new
    /// cancellation request (which keeps the revision).
    fn is_followed_by(self, next: &TaskProgress) -> bool {
        next.revision > self.revision
            || (next.is_terminal() && !self.terminal)
            || (next.revision == self.revision && next.cancel_requested && !self.cancel_requested)
    }
}

struct Follow {
    subscription: Subscription,
    reader: Reader,
    task_id: TaskId,
    seen: Seen,
}

impl Follow {
    /// The next change, or `None` when the tracker is gone or the task has
    /// vanished.
    async fn next_change(&mut self) -> Option<TaskProgress> {
        loop {
            let candidate = match self.subscription.receiver.recv().await? {
                Event::Progress(progress) => progress,
                Event::Resync => Arc::new(self.reread().await?),
            };
            if self.seen.is_followed_by(&candidate) {
                self.seen = Seen::of(&candidate);
                return Some(Arc::unwrap_or_clone(candidate));
            }
        }
    }

    /// The task's current snapshot, retried a few times while the server
    /// is coming back.
    async fn reread(&self) -> Option<TaskProgress> {
        let mut pause = Duration::from_millis(50);
        for attempt in 1..=RESYNC_ATTEMPTS {
            match self.reader.get(self.task_id).await {
                Ok(progress) => return progress,
                Err(error) if attempt == RESYNC_ATTEMPTS => {
                    tracing::warn!(task_id = %self.task_id, %error, "cannot re-read the task; ending its stream");
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
        None
    }
}

/// `first`, then the changes `subscription` brings, ending after the
/// terminal snapshot.
pub(crate) fn follow(first: TaskProgress, subscription: Subscription, reader: Reader) -> ProgressStream {
    if first.is_terminal() {
        return stream::once(async move { first }).boxed();
    }
    let follow = Follow {
        subscription,
        reader,
        task_id: first.task_id,
        seen: Seen::of(&first),
    };
    let rest = stream::unfold(Some(follow), |follow| async move {
        let mut follow = follow?;
        let progress = follow.next_change().await?;
        let more = (!progress.is_terminal()).then_some(follow);
        Some((progress, more))
    });
    stream::once(async move { first }).chain(rest).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(revision: u64, cancel_requested: bool, terminal: bool) -> Seen {
        Seen {
            revision,
            cancel_requested,
            terminal,
        }
    }

    fn progress(revision: u64, cancel_requested: bool, terminal: bool) -> TaskProgress {
        let json = serde_json::json!({
            "taskId": TaskId::new(),
            "taskName": "Test",
            "status": if terminal { "completed" } else { "running" },
            "totalSteps": 0,
            "completedSteps": 0,
            "percent": 0.0,
            "steps": [],
            "cancellable": true,
            "cancelRequested": cancel_requested,
            "isComplete": terminal,
            "revision": revision,
            "createdAt": "2024-01-01T00:00:00Z",
            "updatedAt": "2024-01-01T00:00:00Z",
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn only_changes_pass() {
        let last = seen(5, false, false);
        assert!(last.is_followed_by(&progress(6, false, false)), "a later revision");
        assert!(!last.is_followed_by(&progress(5, false, false)), "a duplicate");
        assert!(!last.is_followed_by(&progress(4, true, false)), "an older one");
        assert!(last.is_followed_by(&progress(5, true, false)), "a cancellation request");
        assert!(last.is_followed_by(&progress(3, false, true)), "the terminal one");
        let cancelled = seen(5, true, false);
        assert!(
            !cancelled.is_followed_by(&progress(5, true, false)),
            "a repeated request"
        );
    }
}

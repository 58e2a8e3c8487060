//! The host's task history: what [`HostBuilder::history`](super::HostBuilder::history)
//! keeps, read back.

use super::{Caller, Host};
use crate::error::{Error, Result};
use crate::history::{HistoryPage, HistoryQuery, TaskHistoryDetail};
use crate::id::TaskId;
use crate::infra::TaskHistory;

impl Host {
    /// The history this host keeps, if it keeps one.
    pub fn history(&self) -> Option<&std::sync::Arc<dyn TaskHistory>> {
        self.inner.rt.history.as_ref().map(|writer| writer.history())
    }

    fn required_history(&self) -> Result<&std::sync::Arc<dyn TaskHistory>> {
        self.history()
            .ok_or_else(|| Error::Unsupported("this host keeps no task history (HostBuilder::history)".into()))
    }

    /// Tasks from the history, newest first: every task it keeps, also
    /// those the progress tracker forgot.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the host keeps no history; a backend
    /// error.
    pub async fn history_list(&self, query: &HistoryQuery) -> Result<HistoryPage> {
        self.required_history()?.list(query).await
    }

    /// Everything the history keeps of `task_id`: its row, attempts,
    /// conditions' snapshots and audit log. Records are written a moment
    /// after their events (in batches): [`flush_history`](Self::flush_history)
    /// waits for them.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the host keeps no history; a backend
    /// error.
    pub async fn task_history(&self, task_id: TaskId) -> Result<Option<TaskHistoryDetail>> {
        self.required_history()?.task(task_id).await
    }

    /// Waits until every history record this host made so far is written
    /// (at once when it keeps no history). While the history cannot be
    /// written this waits for it to come back.
    pub async fn flush_history(&self) {
        if let Some(writer) = &self.inner.rt.history {
            writer.flush().await;
        }
    }
}

impl Caller {
    /// [`Host::history_list`]: the caller's own tasks (none when it asks
    /// for another submitter's), or every task for an operator (who may
    /// filter by submitter).
    ///
    /// # Errors
    /// As [`Host::history_list`].
    pub async fn history_list(&self, query: &HistoryQuery) -> Result<HistoryPage> {
        if self.is_operator() {
            return self.host().history_list(query).await;
        }
        let subject = self.principal().subject();
        if query.submitter.as_deref().is_some_and(|asked| asked != subject) {
            // Someone else's tasks: none the caller may see.
            return Ok(HistoryPage {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let own = HistoryQuery {
            submitter: Some(subject.to_owned()),
            ..query.clone()
        };
        self.host().history_list(&own).await
    }

    /// [`Host::task_history`] of a task the caller may see; `None` for an
    /// unknown task and for a task of someone else.
    ///
    /// # Errors
    /// As [`Host::task_history`].
    pub async fn task_history(&self, task_id: TaskId) -> Result<Option<TaskHistoryDetail>> {
        let detail = self.host().task_history(task_id).await?;
        Ok(detail.filter(|detail| self.owns(&detail.task.progress)))
    }
}

//! A bound on live event subscribers (SSE streams and WebSockets), per task
//! and in all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{HeaderValue, StatusCode, header};
use dtask_core::TaskId;

use crate::problem::Problem;

/// The live subscribers of every task.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    per_task: usize,
    total: usize,
    live: Mutex<Live>,
}

#[derive(Debug, Default)]
struct Live {
    total: usize,
    by_task: HashMap<TaskId, usize>,
}

/// One subscriber's place; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Subscription {
    subscribers: Arc<Subscribers>,
    task_id: TaskId,
}

impl Subscribers {
    /// Bounds of `per_task` subscribers to one task and `total` in all.
    pub(crate) fn new(per_task: usize, total: usize) -> Self {
        Self {
            per_task,
            total,
            live: Mutex::default(),
        }
    }

    /// A place for one more subscriber of `task_id`.
    ///
    /// # Errors
    /// `503 too-many-subscribers` (with `Retry-After: 5`) past a bound.
    pub(crate) fn subscribe(self: &Arc<Self>, task_id: TaskId) -> Result<Subscription, Problem> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let of_task = live.by_task.get(&task_id).copied().unwrap_or(0);
        let detail = if live.total >= self.total {
            Some(format!("the server follows {} tasks' streams, its most", self.total))
        } else if of_task >= self.per_task {
            Some(format!("task {task_id} has {} subscribers, its most", self.per_task))
        } else {
            None
        };
        if let Some(detail) = detail {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too-many-subscribers",
                "Too many subscribers",
                format!("{detail}; poll `GET /api/tasks/{{id}}` or retry later"),
            )
            .header(header::RETRY_AFTER, HeaderValue::from_static("5")));
        }
        live.total += 1;
        *live.by_task.entry(task_id).or_default() += 1;
        Ok(Subscription {
            subscribers: Arc::clone(self),
            task_id,
        })
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        self.live.lock().unwrap_or_else(PoisonError::into_inner).total
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut live = self.subscribers.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.total = live.total.saturating_sub(1);
        if let Some(count) = live.by_task.get_mut(&self.task_id) {
            *count -= 1;
            if *count == 0 {
                live.by_task.remove(&self.task_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_and_freed() {
        let subscribers = Arc::new(Subscribers::new(2, 3));
        let (a, b) = (TaskId::new(), TaskId::new());
        let first = subscribers.subscribe(a).unwrap();
        let _second = subscribers.subscribe(a).unwrap();
        let refused = subscribers.subscribe(a).unwrap_err();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        let _third = subscribers.subscribe(b).unwrap();
        assert!(subscribers.subscribe(b).is_err(), "the total bound");
        drop(first);
        assert_eq!(subscribers.live(), 2);
        let _again = subscribers.subscribe(a).unwrap();
    }
}

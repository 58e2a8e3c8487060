//! Task chaining (`#[depends_on]`) on a host: the typed edges, the check
//! that they form a DAG, and how a completed task starts its dependents.
//!
//! A dependent starts when its upstream completes and the edge's condition
//! holds on the upstream's response; its request is built from that
//! response. It runs as its own task: submitted as the upstream's
//! submitter, under an id derived from the upstream's
//! ([`TaskId::derived`]), with `parentTaskId` naming the upstream. Its
//! failure does not touch the upstream, which has completed: each task
//! compensates only its own steps, unless the edge is declared
//! `compensate_upstream`: then the upstream, saved `AwaitingDependents`,
//! is resumed by each such dependent's end ([`resume_upstream`]) and
//! concluded by the worker that takes it ([`awaited_dependents`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use futures::future::BoxFuture;

use super::{Host, HostInner};
use crate::error::{Error, Result};
use crate::id::TaskId;
use crate::infra::QueueMessage;
use crate::kernel::{AnyResponse, Dependent, Runtime, Starter};
use crate::progress::{TaskProgress, TaskStatus};
use crate::task::{DependentTask, Task, TaskDefinition, Upstream};
use crate::trace::TraceParent;

/// One typed edge: judged by the kernel, started by the host.
pub(super) trait Edge: Dependent {
    /// The upstream task's definition.
    fn upstream(&self) -> &'static TaskDefinition;

    /// The dependent task's definition.
    fn downstream(&self) -> &'static TaskDefinition;

    /// Submits the dependent `decided` on `host`, its request built from
    /// `response`; a dependent already known (started before) is left
    /// alone.
    fn start<'a>(
        &'a self,
        host: &'a Host,
        upstream: &'a TaskProgress,
        decided: &'a DependentTask,
        response: &'a AnyResponse,
    ) -> BoxFuture<'a, Result<()>>;
}

/// The edges of task `D`, ready to register.
pub(super) fn edges_of<D: Task>() -> Vec<Arc<dyn Edge>> {
    D::upstreams()
        .into_iter()
        .map(|upstream| Arc::new(TypedEdge { upstream }) as Arc<dyn Edge>)
        .collect()
}

struct TypedEdge<D: Task> {
    upstream: Upstream<D>,
}

impl<D: Task> Dependent for TypedEdge<D> {
    fn decide(&self, upstream: TaskId, response: &AnyResponse) -> DependentTask {
        let name = D::definition().name;
        let (started, condition) = match self.upstream.decide(response) {
            Some(None) => (true, None),
            Some(Some(condition)) => (condition.holds, Some(condition)),
            None => {
                tracing::error!(
                    dependent = name,
                    upstream = self.upstream.upstream().name,
                    "the upstream's response is not of the type the edge reads; not starting the dependent"
                );
                (false, None)
            }
        };
        DependentTask {
            task_name: name.to_owned(),
            task_id: TaskId::derived(upstream, name),
            started,
            condition,
            compensates_upstream: self.upstream.compensates_upstream(),
        }
    }
}

impl<D: Task> Edge for TypedEdge<D> {
    fn upstream(&self) -> &'static TaskDefinition {
        self.upstream.upstream()
    }

    fn downstream(&self) -> &'static TaskDefinition {
        D::definition()
    }

    fn start<'a>(
        &'a self,
        host: &'a Host,
        upstream: &'a TaskProgress,
        decided: &'a DependentTask,
        response: &'a AnyResponse,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let name = D::definition().name;
            let request = self.upstream.build(response).ok_or_else(|| {
                Error::invalid(
                    "dependency",
                    format!(
                        "the response of `{}` is not of the type `{name}` reads",
                        upstream.task_name
                    ),
                )
            })?;
            let submitted = host.submit_dependent::<D>(decided.task_id, request, upstream).await;
            match submitted {
                Ok(_) => {
                    tracing::info!(upstream = %upstream.task_id, dependent = %decided.task_id, task = name, "dependent task started");
                    Ok(())
                }
                // Started before this upstream's message came back.
                Err(Error::AlreadyExists { .. }) => Ok(()),
                Err(error) => Err(error),
            }
        })
    }
}

/// Starts the dependents of a host's completed tasks.
pub(super) struct HostStarter {
    pub(super) host: Weak<HostInner>,
    pub(super) edges: HashMap<&'static str, Vec<Arc<dyn Edge>>>,
}

impl Starter for HostStarter {
    fn start<'a>(
        &'a self,
        upstream: &'static str,
        progress: &'a TaskProgress,
        response: &'a AnyResponse,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(inner) = self.host.upgrade() else {
                return Err(Error::Closed { what: "the host" });
            };
            let host = Host { inner };
            for edge in self.edges.get(upstream).into_iter().flatten() {
                let name = edge.downstream().name;
                let decided = progress.dependents.iter().find(|d| d.task_name == name && d.started);
                if let Some(decided) = decided {
                    edge.start(&host, progress, decided, response).await?;
                }
            }
            Ok(())
        })
    }
}

/// What follows the saved end of a task of `definition` (or its wait for
/// its dependents), before its message is acknowledged: starting the
/// dependents `progress` records, then resuming the upstream that awaits
/// it. `response` is its typed response, when it built one.
///
/// # Errors
/// A dependent that could not be started or an upstream that could not be
/// resumed: the caller hands its message back, and the redelivery does
/// both again (a dependent already started is found).
pub(super) async fn follow_up(
    rt: &Runtime,
    definition: &'static TaskDefinition,
    progress: &TaskProgress,
    response: Option<&AnyResponse>,
) -> Result<()> {
    let starts = matches!(progress.status, TaskStatus::Completed | TaskStatus::AwaitingDependents);
    if let (true, Some(response)) = (starts, response) {
        rt.dependents.start(definition.name, progress, response).await?;
    }
    resume_upstream(rt, definition, progress).await
}

/// How the dependents an upstream awaits stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Awaited {
    /// One has not ended (or is not started yet): its end resumes the
    /// upstream.
    Running,
    /// They all completed.
    Completed,
    /// One ended without completing; why.
    Failed(String),
}

/// How the dependents that `upstream` (awaiting them) started with
/// `compensate_upstream` edges stand, read from the tracker.
///
/// # Errors
/// A tracker that cannot be read.
pub(super) async fn awaited_dependents(rt: &Runtime, upstream: &TaskProgress) -> Result<Awaited> {
    let mut failures = Vec::new();
    for dependent in (upstream.dependents.iter()).filter(|d| d.started && d.compensates_upstream) {
        let Some(progress) = rt.infra.progress.get(dependent.task_id).await? else {
            // Unknown to the tracker (a Redis restarted without its data):
            // its end, when its worker runs it, resumes the upstream again.
            return Ok(Awaited::Running);
        };
        match progress.status {
            TaskStatus::Completed => {}
            status if status.is_terminal() => failures.push(format!(
                "dependent task `{}` ({}) ended {}{}",
                dependent.task_name,
                dependent.task_id,
                status.as_str(),
                progress.error.map(|e| format!(": {e}")).unwrap_or_default()
            )),
            _ => return Ok(Awaited::Running),
        }
    }
    Ok(match failures.is_empty() {
        true => Awaited::Completed,
        false => Awaited::Failed(failures.join("; ")),
    })
}

/// Sends the upstream of `progress` (an ended task of `definition`, started
/// by `#[depends_on]`) its saved state back, on its queue, when the edge is
/// declared `compensate_upstream`, so that a worker concludes it; nothing
/// otherwise, nor when the upstream has ended already. Called after
/// `progress` is saved and before its message is acknowledged: a crash in
/// between sends it again on redelivery, and an upstream resumed twice
/// concludes once (under its lock).
///
/// # Errors
/// A tracker, store or queue that failed, or an upstream that cannot be
/// found (which of several opted-in upstreams it is, or its saved state):
/// the caller hands its message back, so it is tried again and, failing
/// for good, dead-lettered for an operator rather than forgotten.
async fn resume_upstream(rt: &Runtime, definition: &TaskDefinition, progress: &TaskProgress) -> Result<()> {
    let Some(parent) = progress.parent_task_id.filter(|_| progress.is_terminal()) else {
        return Ok(());
    };
    let opted: Vec<&'static TaskDefinition> = (definition.depends_on.iter())
        .filter(|edge| edge.compensate_upstream)
        .map(|edge| (edge.upstream)())
        .collect();
    if opted.is_empty() {
        return Ok(());
    }
    let tracked = rt.infra.progress.get(parent).await?;
    let up = match (opted.as_slice(), &tracked) {
        // Concluded already.
        (_, Some(upstream)) if upstream.is_terminal() => return Ok(()),
        ([only], _) => *only,
        (_, Some(upstream)) => match opted.iter().find(|up| up.name == upstream.task_name) {
            Some(up) => *up,
            // Started through an edge that does not opt in.
            None => return Ok(()),
        },
        (_, None) => {
            return Err(Error::not_found(format!(
                "upstream task {parent} in the tracker, to tell which of `{}`'s upstreams to resume",
                definition.name
            )));
        }
    };
    let state = (rt.infra.state.load(parent).await?)
        .ok_or_else(|| Error::not_found(format!("the saved state of upstream task {parent}, to resume it")))?;
    let trace = (tracked.and_then(|upstream| upstream.trace_id)).and_then(|id| TraceParent::of_trace(&id));
    let message = QueueMessage::new(parent, up.name, state.payload).with_trace_parent(trace);
    rt.infra.publisher.publish(up.queue, message).await?;
    tracing::debug!(task_id = %progress.task_id, upstream = %parent, "dependent ended; upstream resumed");
    Ok(())
}

/// Checks that the registered tasks' edges form a DAG whose upstreams are
/// registered too.
///
/// # Errors
/// [`Error::Invalid`] naming a missing upstream or the tasks of a cycle.
pub(super) fn check_graph(edges: &[Arc<dyn Edge>], registered: &HashSet<&'static str>) -> Result<()> {
    let mut next: HashMap<&'static str, Vec<&'static str>> = HashMap::new();
    for edge in edges {
        let (upstream, downstream) = (edge.upstream().name, edge.downstream().name);
        if !registered.contains(upstream) {
            return Err(Error::invalid(
                "dependency",
                format!("`{downstream}` depends on `{upstream}`, which is not registered on this host"),
            ));
        }
        next.entry(upstream).or_default().push(downstream);
    }
    // Depth-first, in name order so a cycle is named the same way each time.
    let mut names: Vec<&'static str> = next.keys().copied().collect();
    names.sort_unstable();
    let mut done = HashSet::new();
    for start in names {
        let mut path = Vec::new();
        if let Some(cycle) = find_cycle(start, &next, &mut path, &mut done) {
            return Err(Error::invalid(
                "dependency",
                format!("the tasks' dependencies form a cycle: {}", cycle.join(" → ")),
            ));
        }
    }
    Ok(())
}

fn find_cycle(
    task: &'static str,
    next: &HashMap<&'static str, Vec<&'static str>>,
    path: &mut Vec<&'static str>,
    done: &mut HashSet<&'static str>,
) -> Option<Vec<&'static str>> {
    if let Some(at) = path.iter().position(|t| *t == task) {
        let mut cycle = path[at..].to_vec();
        cycle.push(task);
        return Some(cycle);
    }
    if done.contains(task) {
        return None;
    }
    path.push(task);
    for &dependent in next.get(task).into_iter().flatten() {
        if let Some(cycle) = find_cycle(dependent, next, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(task);
    None
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::format::Format;
    use crate::task::Mode;

    const fn definition(name: &'static str) -> TaskDefinition {
        TaskDefinition {
            name,
            queue: "default",
            max_retries: 0,
            timeout: Duration::from_secs(60),
            mode: Mode::InProcess,
            format: Format::Json,
            cancellable: false,
            required_roles: &[],
            encrypt_messages: false,
            version: 1,
            steps: &[],
            groups: &[],
            depends_on: &[],
        }
    }

    static A: TaskDefinition = definition("A");
    static B: TaskDefinition = definition("B");
    static C: TaskDefinition = definition("C");
    static D: TaskDefinition = definition("D");

    /// An edge known only by its ends: what the graph check reads.
    struct Ends(&'static TaskDefinition, &'static TaskDefinition);

    impl Dependent for Ends {
        fn decide(&self, _: TaskId, _: &AnyResponse) -> DependentTask {
            unreachable!("the graph check does not judge edges")
        }
    }

    impl Edge for Ends {
        fn upstream(&self) -> &'static TaskDefinition {
            self.0
        }

        fn downstream(&self) -> &'static TaskDefinition {
            self.1
        }

        fn start<'a>(
            &'a self,
            _: &'a Host,
            _: &'a TaskProgress,
            _: &'a DependentTask,
            _: &'a AnyResponse,
        ) -> BoxFuture<'a, Result<()>> {
            unreachable!("the graph check starts nothing")
        }
    }

    fn check(edges: &[(&'static TaskDefinition, &'static TaskDefinition)], registered: &[&'static str]) -> Result<()> {
        let edges: Vec<Arc<dyn Edge>> = edges
            .iter()
            .map(|&(u, d)| Arc::new(Ends(u, d)) as Arc<dyn Edge>)
            .collect();
        check_graph(&edges, &registered.iter().copied().collect())
    }

    #[test]
    fn a_dag_passes() {
        check(&[(&A, &B), (&A, &C), (&B, &D), (&C, &D)], &["A", "B", "C", "D"]).unwrap();
    }

    #[test]
    fn a_cycle_is_refused_and_named() {
        let error = check(&[(&A, &B), (&B, &C), (&C, &A), (&C, &D)], &["A", "B", "C", "D"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid dependency: the tasks' dependencies form a cycle: A → B → C → A"
        );
    }

    #[test]
    fn an_upstream_not_registered_is_refused() {
        let error = check(&[(&A, &B)], &["B"]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`B` depends on `A`, which is not registered"),
            "{error}"
        );
    }
}

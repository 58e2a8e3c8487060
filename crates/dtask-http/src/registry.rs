//! The tasks an API serves, behind a small type-erased interface.
//!
//! Routes are not generic: a submission finds its task by route, every
//! other route finds it by the `taskName` of the task's progress. What
//! differs per task (building the typed request, reading the typed
//! response, finding the produced file) sits behind [`Endpoint`], built
//! once per mounted task from its type.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use dtask_core::task::{StepHost, StepKind};
use dtask_core::{Caller, Files, Task, TaskDefinition, TaskId};
use futures::future::BoxFuture;
use heck::ToKebabCase;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::introspect::field_names;
use crate::problem::{ApiResult, kinds};

/// Where a task's produced file is stored, and how to serve it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileRef {
    /// The bucket holding it.
    pub bucket: String,
    /// Its key in the bucket.
    pub key: String,
    /// The name a client saves it under (`Content-Disposition`).
    pub file_name: String,
    /// Its media type (`Content-Type`), e.g. `application/zip`.
    pub content_type: String,
}

/// A task response that names a file the client can download, which
/// [`TaskApiBuilder::downloadable`](crate::TaskApiBuilder::downloadable)
/// serves at `GET /api/tasks/{id}/download`.
///
/// ```
/// use dtask_http::{FileRef, ProducesFile};
///
/// struct Archive { bucket: String, key: String, name: String }
///
/// impl ProducesFile for Archive {
///     fn produced_file(&self) -> Option<FileRef> {
///         Some(FileRef {
///             bucket: self.bucket.clone(),
///             key: self.key.clone(),
///             file_name: self.name.clone(),
///             content_type: "application/zip".to_owned(),
///         })
///     }
/// }
/// ```
pub trait ProducesFile {
    /// The produced file, if this response has one.
    fn produced_file(&self) -> Option<FileRef>;
}

/// How a mounted task's response names its file.
pub(crate) type FileOf<T> = Arc<dyn Fn(&<T as Task>::Response) -> Option<FileRef> + Send + Sync>;

/// A typed request, built and waiting for its files and its submission.
pub(crate) trait PreparedRequest: Send {
    /// Puts the uploaded files into the request; gives them back when the
    /// task takes none.
    fn attach(&mut self, files: Files) -> Result<(), Files>;

    /// Submits the task under `task_id` (runs its Api steps, hands it
    /// off).
    fn submit(self: Box<Self>, caller: Caller, task_id: TaskId) -> BoxFuture<'static, dtask_core::Result<()>>;
}

trait TaskOps: Send + Sync + 'static {
    fn request(&self, value: Value) -> Result<Box<dyn PreparedRequest>, serde_json::Error>;
    fn response<'a>(&'a self, caller: &'a Caller, task_id: TaskId) -> BoxFuture<'a, ApiResult<Option<Value>>>;
    fn produced_file<'a>(&'a self, caller: &'a Caller, task_id: TaskId) -> BoxFuture<'a, ApiResult<Option<FileRef>>>;
}

/// One mounted task.
pub(crate) struct Endpoint {
    pub(crate) definition: &'static TaskDefinition,
    /// The route segment, the task's name in kebab case.
    pub(crate) slug: String,
    /// Its request's fields, as a client names them.
    pub(crate) request_fields: Vec<&'static str>,
    /// Its response's fields.
    pub(crate) response_fields: Vec<&'static str>,
    /// Whether it takes uploaded files (an upload step on the Api host).
    pub(crate) takes_files: bool,
    /// Whether `download` serves its produced file.
    pub(crate) downloadable: bool,
    ops: Box<dyn TaskOps>,
}

impl Endpoint {
    pub(crate) fn new<T: Task>(download: Option<FileOf<T>>) -> Self {
        let definition = T::definition();
        let takes_files = definition
            .steps
            .iter()
            .any(|s| s.host == StepHost::Api && matches!(s.kind, StepKind::FileUpload { .. }));
        Self {
            definition,
            slug: definition.name.to_kebab_case(),
            request_fields: field_names::<T::Request>(),
            response_fields: field_names::<T::Response>(),
            takes_files,
            downloadable: download.is_some(),
            ops: Box::new(Typed::<T> {
                download,
                _task: PhantomData,
            }),
        }
    }

    /// The submit route.
    pub(crate) fn path(&self) -> String {
        format!("/api/tasks/{}", self.slug)
    }

    /// Builds the typed request from multipart fields: first with every
    /// value as a string; if that fails, with each value parsed as JSON
    /// where it parses (so `count=3` fills a number and `tags=["a"]` a
    /// list).
    ///
    /// # Errors
    /// `400` for a field the request does not have (when its fields are
    /// known), and with serde's message.
    pub(crate) fn prepare_fields(&self, fields: &[(String, String)]) -> ApiResult<Box<dyn PreparedRequest>> {
        let unknown = fields
            .iter()
            .find(|(name, _)| !self.request_fields.is_empty() && !self.request_fields.contains(&name.as_str()));
        if let Some((name, _)) = unknown {
            return Err(kinds::invalid_request(format!(
                "`{name}` is not a field of a {} request; its fields are {}",
                self.definition.name,
                self.request_fields.join(", ")
            )));
        }
        let as_strings: Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if let Ok(prepared) = self.ops.request(Value::Object(as_strings)) {
            return Ok(prepared);
        }
        let parsed: Map<String, Value> = fields
            .iter()
            .map(|(k, v)| {
                let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
                (k.clone(), value)
            })
            .collect();
        // The second attempt's error is the more precise one (`-1` is "an
        // integer, expected u32" rather than "a string").
        self.ops.request(Value::Object(parsed)).map_err(|second| {
            kinds::invalid_request(format!(
                "the fields do not make a {} request: {second}",
                self.definition.name
            ))
        })
    }

    /// Builds the typed request from a JSON body.
    ///
    /// # Errors
    /// `400` with serde's message.
    pub(crate) fn prepare_json(&self, value: Value) -> ApiResult<Box<dyn PreparedRequest>> {
        self.ops
            .request(value)
            .map_err(|e| kinds::invalid_request(format!("the body is not a {} request: {e}", self.definition.name)))
    }

    /// The typed response of a completed task, as JSON.
    pub(crate) async fn response(&self, caller: &Caller, task_id: TaskId) -> ApiResult<Option<Value>> {
        self.ops.response(caller, task_id).await
    }

    /// The file a completed task produced.
    pub(crate) async fn produced_file(&self, caller: &Caller, task_id: TaskId) -> ApiResult<Option<FileRef>> {
        self.ops.produced_file(caller, task_id).await
    }
}

struct Typed<T: Task> {
    download: Option<FileOf<T>>,
    _task: PhantomData<fn() -> T>,
}

struct Prepared<T: Task> {
    request: T::Request,
}

impl<T: Task> PreparedRequest for Prepared<T> {
    fn attach(&mut self, files: Files) -> Result<(), Files> {
        T::attach_files(&mut self.request, files)
    }

    fn submit(self: Box<Self>, caller: Caller, task_id: TaskId) -> BoxFuture<'static, dtask_core::Result<()>> {
        Box::pin(async move { caller.submit_with_id::<T>(task_id, self.request).await.map(|_| ()) })
    }
}

impl<T: Task> TaskOps for Typed<T> {
    fn request(&self, value: Value) -> Result<Box<dyn PreparedRequest>, serde_json::Error> {
        let request = serde_json::from_value::<T::Request>(value)?;
        Ok(Box::new(Prepared::<T> { request }))
    }

    fn response<'a>(&'a self, caller: &'a Caller, task_id: TaskId) -> BoxFuture<'a, ApiResult<Option<Value>>> {
        Box::pin(async move {
            let outcome = caller.outcome::<T>(task_id).await?;
            outcome
                .response
                .map(|r| serde_json::to_value(&r))
                .transpose()
                .map_err(|e| kinds::internal(format!("the response of task {task_id} does not serialize: {e}")))
        })
    }

    fn produced_file<'a>(&'a self, caller: &'a Caller, task_id: TaskId) -> BoxFuture<'a, ApiResult<Option<FileRef>>> {
        Box::pin(async move {
            let Some(download) = &self.download else {
                return Ok(None);
            };
            let outcome = caller.outcome::<T>(task_id).await?;
            Ok(outcome.response.as_ref().and_then(|r| download(r)))
        })
    }
}

/// The mounted tasks, by declared name (ordered, so the OpenAPI document
/// is stable).
#[derive(Default)]
pub(crate) struct Registry {
    endpoints: BTreeMap<&'static str, Arc<Endpoint>>,
}

impl Registry {
    /// Mounts `endpoint`, replacing a task of the same name.
    pub(crate) fn insert(&mut self, endpoint: Endpoint) {
        self.endpoints.insert(endpoint.definition.name, Arc::new(endpoint));
    }

    /// The task declared as `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Endpoint>> {
        self.endpoints.get(name)
    }

    /// The task whose declared name or route segment is `name`.
    pub(crate) fn find(&self, name: &str) -> Option<&Arc<Endpoint>> {
        self.get(name)
            .or_else(|| self.endpoints.values().find(|e| e.slug == name))
    }

    /// Every mounted task.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.endpoints.values()
    }
}

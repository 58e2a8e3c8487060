//! Small tasks the HTTP tests mount beside CreateZipFromFiles.

use std::sync::Arc;

use dtask::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

// ---------------------------------------------------------------- Echo

/// Echo takes no files and is not cancellable.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EchoRequest {
    pub text: String,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EchoResponse {
    pub text: String,
}

#[dtask::task(name = "Echo", request = EchoRequest, response = EchoResponse, queue = "echo", mode = InProcess)]
#[custom_step(Shout, order = 1, output = String)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl echo::Steps for Echo {
    async fn shout(&self, _cx: &StepContext, input: echo::ShoutInput<'_>) -> Result<String, StepError> {
        Ok(input.request.text.repeat(input.request.times as usize))
    }

    fn response(&self, outputs: echo::Outputs<'_>) -> Result<EchoResponse, StepError> {
        Ok(EchoResponse {
            text: outputs.shout.clone(),
        })
    }
}

// ---------------------------------------------------------------- Gate

/// Gate runs until its gate opens (or it is cancelled): a task that is
/// reliably running while a test watches it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateRequest {
    #[serde(default)]
    pub value: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResponse {
    pub value: u32,
}

#[dtask::task(name = "Gate", request = GateRequest, response = GateResponse, queue = "gate", mode = InProcess, cancellable)]
#[custom_step(Wait, order = 1, output = u32)]
#[custom_step(Finish, order = 2, inputs(wait), output = u32)]
#[derive(Debug, Clone)]
pub struct Gate {
    open: Arc<watch::Sender<bool>>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            open: Arc::new(watch::channel(false).0),
        }
    }
}

impl Gate {
    /// Lets every waiting (and later) Gate task finish.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

impl gate::Steps for Gate {
    async fn wait(&self, cx: &StepContext, input: gate::WaitInput<'_>) -> Result<u32, StepError> {
        let mut open = self.open.subscribe();
        cx.report_progress(0.5, "waiting for the gate".to_owned());
        tokio::select! {
            _ = open.wait_for(|open| *open) => Ok(input.request.value),
            () = cx.cancelled() => Err(StepError::cancelled()),
        }
    }

    async fn finish(&self, _cx: &StepContext, input: gate::FinishInput<'_>) -> Result<u32, StepError> {
        Ok(*input.wait + 1)
    }

    fn response(&self, outputs: gate::Outputs<'_>) -> Result<GateResponse, StepError> {
        Ok(GateResponse { value: *outputs.finish })
    }
}

// ---------------------------------------------------------------- Privileged

/// Privileged may be submitted by holders of `uploader` or `admin` only.
#[dtask::task(
    name = "Privileged",
    request = EchoRequest,
    response = EchoResponse,
    queue = "privileged",
    mode = InProcess,
    requires_role = ["uploader", "admin"]
)]
#[custom_step(Copy, order = 1, output = String)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Privileged;

impl privileged::Steps for Privileged {
    async fn copy(&self, _cx: &StepContext, input: privileged::CopyInput<'_>) -> Result<String, StepError> {
        Ok(input.request.text.clone())
    }

    fn response(&self, outputs: privileged::Outputs<'_>) -> Result<EchoResponse, StepError> {
        Ok(EchoResponse {
            text: outputs.copy.clone(),
        })
    }
}

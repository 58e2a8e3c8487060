// Type errors in the declaration point at the user's tokens: a download
// source that is not `StoredObjects`, an upload source that is not an
// `UploadSource`, a condition that is not a `bool`.
use dtask::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Req {
    #[serde(skip)]
    pub files: Files,
    pub height: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resp;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub name: String,
}

#[dtask::task(name = "Types", request = Req, response = Resp)]
#[file_download(Fetch, order = 1, source = request.files)]
#[custom_step(Inspect, order = 2, output = Probe)]
#[file_upload(Store, order = 3, bucket = "store", source = inspect.name)]
#[condition(Store, request.height + 1)]
pub struct Types;

impl types::Steps for Types {
    async fn inspect(&self, _cx: &StepContext, _input: types::InspectInput<'_>) -> Result<Probe, StepError> {
        Ok(Probe { name: "x".into() })
    }

    fn response(&self, _outputs: types::Outputs<'_>) -> Result<Resp, StepError> {
        Ok(Resp)
    }
}

fn main() {}

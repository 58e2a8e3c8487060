// Rule 4: placement, retry, condition, compensation and group name declared
// steps and groups, with a hint when a declared name is close.
use dtask::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Req {
    #[serde(skip)]
    pub files: Files,
    #[serde(skip)]
    pub more: Files,
    pub height: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resp;

#[dtask::task(name = "Refs", request = Req, response = Resp)]
#[custom_step(CreateZipArchive, order = 1)]
#[custom_step(Transcode, order = 2, group = TranscodAll)]
#[parallel_group(TranscodeAll, order = 2)]
#[custom_step(Other, order = 2, group = TranscodeAll)]
#[placement(CreateZipArchve, host = Worker)]
#[retry(createziparchive, max_retries = 1)]
#[condition(Publish, request.height > 0)]
#[compensation(TranscodeAll)]
pub struct Refs;

fn main() {}

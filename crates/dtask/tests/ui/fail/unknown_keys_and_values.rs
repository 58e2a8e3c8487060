// Rule 11: unknown keys, unknown values and wrong literal kinds.
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

#[dtask::task(name = "Keys", request = Req, response = Resp, mode = Local, serialization = Protobuff, cancellable = "yes", retries = 3)]
#[custom_step(Work, order = 1, bucket = "b", output = u32)]
#[file_upload(Upload, order = 2, bucket = 3, source = work)]
#[retry(Work, backoff = Quadratic, jitter = Ful, on_exhausted = Retry)]
#[placement(Work, host = Browser)]
#[parallel_group(Group, order = 3, await_all = 1)]
pub struct Keys;

fn main() {}

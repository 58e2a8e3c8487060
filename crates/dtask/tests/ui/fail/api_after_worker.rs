// Rule 8: Api steps come before every Worker step (one hand-off point).
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

#[dtask::task(name = "Handoff", request = Req, response = Resp)]
#[file_upload(Upload, order = 1, bucket = "incoming", source = request.files)]
#[placement(Upload, host = Api)]
#[custom_step(Process, order = 2)]
#[custom_step(Notify, order = 3)]
#[placement(Notify, host = Api)]
pub struct Handoff;

fn main() {}

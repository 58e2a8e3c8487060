// Rule 12: a request's files are read once, so one request field feeds at
// most one upload step.
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

#[dtask::task(name = "Twice", request = Req, response = Resp)]
#[file_upload(First, order = 1, bucket = "incoming", source = request.files)]
#[file_upload(Second, order = 2, bucket = "backup", source = request.files)]
#[file_upload(Third, order = 3, bucket = "backup", source = request.more)]
pub struct Twice;

fn main() {}

// Rule 10: built-in steps undo themselves; #[compensation] is for custom
// steps.
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

#[dtask::task(name = "Builtin", request = Req, response = Resp)]
#[file_upload(Upload, order = 1, bucket = "incoming", source = request.files)]
#[file_download(Download, order = 2, source = upload)]
#[compensation(Upload)]
#[compensation(Download)]
pub struct Builtin;

fn main() {}

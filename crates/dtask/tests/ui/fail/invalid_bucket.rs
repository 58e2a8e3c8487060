// Rule 13: bucket names follow the S3 rules.
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

#[dtask::task(name = "Buckets", request = Req, response = Resp)]
#[file_upload(Short, order = 1, bucket = "ab", source = request.files)]
#[file_upload(Upper, order = 2, bucket = "Incoming_Files", source = request.more)]
#[file_upload(Dot, order = 3, bucket = ".hidden", source = short)]
pub struct Buckets;

fn main() {}

// Rule 6: a step reads only the request and the data of steps that run
// strictly earlier, named in snake_case.
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

#[dtask::task(name = "Flow", request = Req, response = Resp)]
#[custom_step(Extract, order = 2, inputs(publish, extrct, Probe), output = u32)]
#[custom_step(Probe, order = 1, inputs(request))]
#[custom_step(Publish, order = 3)]
#[file_download(Fetch, order = 4, source = upload.files)]
#[file_upload(Upload, order = 5, bucket = "out", source = publish_later)]
#[custom_step(PublishLater, order = 6)]
#[condition(Extract, extract > 1 && publish == () && threshold < request.height)]
pub struct Flow;

fn main() {}

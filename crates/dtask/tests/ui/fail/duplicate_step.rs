// Rule 3: step names are unique, PascalCase, and distinct in snake_case.
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

#[dtask::task(name = "Dup", request = Req, response = Resp)]
#[custom_step(Work, order = 1)]
#[custom_step(Work, order = 2)]
#[custom_step(HttpGet, order = 3)]
#[custom_step(HTTPGet, order = 4)]
#[custom_step(upload_more, order = 5)]
#[custom_step(Request, order = 6)]
#[parallel_group(Work, order = 7)]
pub struct Dup;

fn main() {}

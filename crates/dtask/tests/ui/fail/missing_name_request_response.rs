// Rule 1: a task has a name, a request and a response (MustHaveName,
// MustHaveRequest, MustHaveResponse).
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

#[dtask::task(queue = "default")]
#[custom_step(Work, order = 1)]
pub struct NoNameNoTypes;

fn main() {}

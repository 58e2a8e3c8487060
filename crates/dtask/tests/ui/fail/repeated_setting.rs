// Rule 9: a step takes at most one placement, retry, condition and
// compensation.
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
#[custom_step(Work, order = 1)]
#[placement(Work, host = Worker)]
#[placement(Work, host = Worker)]
#[retry(Work, max_retries = 1)]
#[retry(Work, max_retries = 2)]
#[condition(Work, request.height > 0)]
#[condition(Work, request.height > 1)]
#[compensation(Work)]
#[compensation(Work)]
pub struct Twice;

fn main() {}

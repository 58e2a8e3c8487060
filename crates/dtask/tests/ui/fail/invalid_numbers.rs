// Rule 7: counts are non-negative integers, time limits are positive and
// versions start at 1.
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

#[dtask::task(name = "Numbers", request = Req, response = Resp, max_retries = -1, timeout_secs = 0)]
#[custom_step(Work, order = "1", timeout_secs = 0)]
#[custom_step(More, order = 2, timeout_secs = 1.5)]
#[retry(More, max_retries = -3, base_delay_ms = 99999999999999999999999)]
pub struct Numbers;

#[dtask::task(name = "Versions", request = Req, response = Resp, version = 0)]
#[custom_step(Work, order = 1)]
pub struct Versions;

fn main() {}

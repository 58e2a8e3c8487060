// The generated `Steps` trait must be implemented for the task struct.
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

#[dtask::task(name = "Lazy", request = Req, response = Resp)]
#[custom_step(Work, order = 1)]
pub struct Lazy;

fn main() {}

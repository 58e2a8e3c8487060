// The task attribute goes on a struct without generics.
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

#[dtask::task(name = "Enum", request = Req, response = Resp)]
pub enum NotAStruct {}

#[dtask::task(name = "Generic", request = Req, response = Resp)]
#[custom_step(Work, order = 1)]
pub struct Generic<T>(T);

fn main() {}

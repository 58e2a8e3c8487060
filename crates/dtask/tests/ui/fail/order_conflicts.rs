// Rule 5: steps share an order only inside one parallel group; members
// share their group's order; a group has members.
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

#[dtask::task(name = "Orders", request = Req, response = Resp)]
#[custom_step(First, order = 1)]
#[custom_step(AlsoFirst, order = 1)]
#[parallel_group(Both, order = 2)]
#[custom_step(Left, order = 2, group = Both)]
#[custom_step(Right, order = 3, group = Both)]
#[parallel_group(Lonely, order = 4)]
pub struct Orders;

fn main() {}

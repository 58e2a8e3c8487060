// A distributed group awaits all its members: a race cannot be distributed.
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Req;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resp;

#[dtask::task(name = "Mirrors", request = Req, response = Resp)]
#[parallel_group(Fastest, order = 1, await_all = false, distribute)]
#[custom_step(MirrorA, order = 1, group = Fastest)]
#[custom_step(MirrorB, order = 1, group = Fastest)]
pub struct Mirrors;

fn main() {}

// `requires_role` names roles: a string or an array of strings, each one
// word, none twice.
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Req;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resp;

#[dtask::task(name = "Empty", request = Req, response = Resp, requires_role = "")]
#[custom_step(Work, order = 1)]
pub struct Empty;

#[dtask::task(name = "Twice", request = Req, response = Resp, requires_role = ["ops", "admin", "ops"])]
#[custom_step(Work, order = 1)]
pub struct Twice;

#[dtask::task(name = "Spaced", request = Req, response = Resp, requires_role = "team lead")]
#[custom_step(Work, order = 1)]
pub struct Spaced;

#[dtask::task(name = "Bare", request = Req, response = Resp, requires_role = admin)]
#[custom_step(Work, order = 1)]
pub struct Bare;

fn main() {}

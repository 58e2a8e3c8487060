// `encrypt_messages` is a flag: bare, or `= true` / `= false`, given once.
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Req;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resp;

#[dtask::task(name = "Quoted", request = Req, response = Resp, encrypt_messages = "yes")]
#[custom_step(Work, order = 1)]
pub struct Quoted;

#[dtask::task(name = "Named", request = Req, response = Resp, encrypt_messages = always)]
#[custom_step(Work, order = 1)]
pub struct Named;

#[dtask::task(name = "Twice", request = Req, response = Resp, encrypt_messages, encrypt_messages = false)]
#[custom_step(Work, order = 1)]
pub struct Twice;

#[dtask::task(name = "Misspelt", request = Req, response = Resp, encrypt_message)]
#[custom_step(Work, order = 1)]
pub struct Misspelt;

fn main() {}

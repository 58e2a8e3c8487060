// A cycle of #[depends_on] edges among tasks the compiler sees does not
// compile (each task's CHAIN_DEPTH would be its own).
use dtask::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Req;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resp;

fn again(_: &Resp) -> Req {
    Req
}

#[dtask::task(name = "Ping", request = Req, response = Resp)]
#[depends_on(Pong, request = again)]
#[custom_step(Work, order = 1)]
pub struct Ping;

#[dtask::task(name = "Pong", request = Req, response = Resp)]
#[depends_on(Ping, request = again)]
#[custom_step(Work, order = 1)]
pub struct Pong;

impl ping::Steps for Ping {
    async fn work(&self, _: &StepContext, _: ping::WorkInput<'_>) -> Result<(), StepError> {
        Ok(())
    }

    fn response(&self, _: ping::Outputs<'_>) -> Result<Resp, StepError> {
        Ok(Resp)
    }
}

impl pong::Steps for Pong {
    async fn work(&self, _: &StepContext, _: pong::WorkInput<'_>) -> Result<(), StepError> {
        Ok(())
    }

    fn response(&self, _: pong::Outputs<'_>) -> Result<Resp, StepError> {
        Ok(Resp)
    }
}

fn main() {}

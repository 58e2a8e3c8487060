// #[depends_on]: a task does not depend on itself nor twice on one task,
// its condition reads `response` (the upstream's) and nothing else, and
// `compensate_upstream` is a flag.
use dtask::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Req;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resp {
    pub ok: bool,
}

#[dtask::task(name = "Upstream", request = Req, response = Resp)]
#[custom_step(Work, order = 1)]
pub struct Upstream;

impl upstream::Steps for Upstream {
    async fn work(&self, _: &StepContext, _: upstream::WorkInput<'_>) -> Result<(), StepError> {
        Ok(())
    }

    fn response(&self, _: upstream::Outputs<'_>) -> Result<Resp, StepError> {
        Ok(Resp { ok: true })
    }
}

#[dtask::task(name = "Chained", request = Req, response = Resp)]
#[depends_on(Self)]
#[depends_on(Upstream, condition = request.ok)]
#[depends_on(Upstream, condition = response.ok)]
#[custom_step(Work, order = 1)]
pub struct Chained;

#[dtask::task(name = "Strict", request = Req, response = Resp)]
#[depends_on(Upstream, compensate_upstream = "yes")]
#[custom_step(Work, order = 1)]
pub struct Strict;

fn main() {}

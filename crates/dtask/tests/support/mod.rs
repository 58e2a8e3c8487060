//! Tasks shared by the kernel tests: a linear order saga, a video-like
//! saga with a parallel group and a condition, and a race.

#![allow(dead_code, missing_docs, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dtask::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// What the steps did, in order, shared by a task and its test.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    entries: Arc<Mutex<Vec<String>>>,
    instants: Arc<Mutex<Vec<Instant>>>,
}

impl Journal {
    pub fn push(&self, entry: impl Into<String>) {
        self.entries.lock().unwrap().push(entry.into());
    }

    pub fn entries(&self) -> Vec<String> {
        self.entries.lock().unwrap().clone()
    }

    pub fn count(&self, entry: &str) -> usize {
        self.entries().iter().filter(|e| *e == entry).count()
    }

    pub fn mark(&self) {
        self.instants.lock().unwrap().push(Instant::now());
    }

    /// Milliseconds between consecutive marks.
    pub fn gaps_ms(&self) -> Vec<u128> {
        let instants = self.instants.lock().unwrap();
        instants.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect()
    }
}

// ---------------------------------------------------------------- orders

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OrderRequest {
    pub item: String,
    /// Charge fails on its first `charge_failures` attempts.
    pub charge_failures: u32,
    /// Ship fails every time.
    pub ship_fails: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderResponse {
    pub reservation: String,
    pub payment: String,
    pub tracking: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipment {
    pub tracking: String,
}

/// Reserve → Charge → Ship, each undoable; Charge retries 5 times,
/// exponential from 200 ms.
#[dtask::task(
    name = "PlaceOrder",
    request = OrderRequest,
    response = OrderResponse,
    queue = "orders",
    max_retries = 0,
    timeout_secs = 30,
    mode = InProcess,
    cancellable
)]
#[custom_step(Reserve, order = 1, output = Reservation)]
#[custom_step(Charge, order = 2, inputs(reserve), output = Payment)]
#[custom_step(Ship, order = 3, inputs(reserve, charge), output = Shipment)]
#[retry(Charge, max_retries = 5, backoff = Exponential, base_delay_ms = 200)]
#[compensation(Reserve)]
#[compensation(Charge)]
#[compensation(Ship)]
#[derive(Debug, Clone, Default)]
pub struct PlaceOrder {
    pub journal: Journal,
}

impl place_order::Steps for PlaceOrder {
    async fn reserve(&self, _cx: &StepContext, input: place_order::ReserveInput<'_>) -> Result<Reservation, StepError> {
        self.journal.push("run Reserve");
        Ok(Reservation {
            id: format!("res-{}", input.request.item),
        })
    }

    async fn charge(&self, cx: &StepContext, input: place_order::ChargeInput<'_>) -> Result<Payment, StepError> {
        self.journal.push("run Charge");
        self.journal.mark();
        if cx.attempt() <= input.request.charge_failures {
            return Err(StepError::transient(format!(
                "card declined (attempt {})",
                cx.attempt()
            )));
        }
        Ok(Payment {
            id: format!("pay-for-{}", input.reserve.id),
        })
    }

    async fn ship(&self, _cx: &StepContext, input: place_order::ShipInput<'_>) -> Result<Shipment, StepError> {
        self.journal.push("run Ship");
        if input.request.ship_fails {
            return Err(StepError::permanent("no courier"));
        }
        Ok(Shipment {
            tracking: format!("{}/{}", input.reserve.id, input.charge.id),
        })
    }

    async fn compensate_reserve(
        &self,
        _cx: &StepContext,
        _r: &OrderRequest,
        _d: &Reservation,
    ) -> Result<(), StepError> {
        self.journal.push("undo Reserve");
        Ok(())
    }

    async fn compensate_charge(&self, _cx: &StepContext, _r: &OrderRequest, _d: &Payment) -> Result<(), StepError> {
        self.journal.push("undo Charge");
        Ok(())
    }

    async fn compensate_ship(&self, _cx: &StepContext, _r: &OrderRequest, _d: &Shipment) -> Result<(), StepError> {
        self.journal.push("undo Ship");
        Ok(())
    }

    fn response(&self, outputs: place_order::Outputs<'_>) -> Result<OrderResponse, StepError> {
        Ok(OrderResponse {
            reservation: outputs.reserve.id.clone(),
            payment: outputs.charge.id.clone(),
            tracking: outputs.ship.tracking.clone(),
        })
    }
}

/// Charge's end is recorded and Ship has not started: a mid-run save.
pub fn charge_just_completed(progress: &dtask::TaskProgress) -> bool {
    progress.steps[1].status == dtask::StepStatus::Completed && progress.steps[2].status == dtask::StepStatus::Pending
}

/// Asserts that an order of `item` completed with its full response.
pub fn assert_order_completed(progress: &dtask::TaskProgress, response: Option<OrderResponse>, item: &str) {
    assert_eq!(progress.status, dtask::TaskStatus::Completed, "{progress:?}");
    let response = response.expect("the response is saved");
    assert_eq!(response.tracking, format!("res-{item}/pay-for-res-{item}"));
}

// ---------------------------------------------------------------- orders, v2

/// The output of every step of the newer shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    /// Always true.
    pub ok: bool,
}

/// `PlaceOrder` as a newer build declares it: Pack replaced Charge (a
/// message of one shape must not run as the other).
#[dtask::task(
    name = "PlaceOrder",
    request = OrderRequest,
    response = Done,
    queue = "orders",
    mode = InProcess
)]
#[custom_step(Reserve, order = 1, output = Done)]
#[custom_step(Pack, order = 2, output = Done)]
#[custom_step(Ship, order = 3, output = Done)]
#[derive(Debug, Clone, Default)]
pub struct PlaceOrderV2;

impl place_order_v2::Steps for PlaceOrderV2 {
    async fn reserve(&self, _: &StepContext, _: place_order_v2::ReserveInput<'_>) -> Result<Done, StepError> {
        Ok(Done { ok: true })
    }

    async fn pack(&self, _: &StepContext, _: place_order_v2::PackInput<'_>) -> Result<Done, StepError> {
        Ok(Done { ok: true })
    }

    async fn ship(&self, _: &StepContext, _: place_order_v2::ShipInput<'_>) -> Result<Done, StepError> {
        Ok(Done { ok: true })
    }

    fn response(&self, _: place_order_v2::Outputs<'_>) -> Result<Done, StepError> {
        Ok(Done { ok: true })
    }
}

// ---------------------------------------------------------------- video

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VideoRequest {
    pub height: u32,
    /// The 1080 rendition fails.
    pub fail_1080: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendition {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoResponse {
    pub renditions: Vec<String>,
}

/// Probe, then three renditions in parallel (the 2160 one only for sources
/// above 1080 lines), then Publish.
#[dtask::task(
    name = "Transcode",
    request = VideoRequest,
    response = VideoResponse,
    queue = "video",
    max_retries = 0,
    timeout_secs = 60,
    mode = InProcess,
    cancellable
)]
#[custom_step(Probe, order = 1, output = Metadata)]
#[parallel_group(TranscodeAll, order = 2, await_all = true)]
#[custom_step(Transcode720, order = 2, group = TranscodeAll, inputs(probe), output = Rendition)]
#[custom_step(Transcode1080, order = 2, group = TranscodeAll, inputs(probe), output = Rendition)]
#[custom_step(Transcode2160, order = 2, group = TranscodeAll, inputs(probe), output = Rendition)]
#[condition(Transcode2160, probe.height > 1080)]
#[compensation(Transcode720)]
#[compensation(Transcode1080)]
#[compensation(Transcode2160)]
#[custom_step(Publish, order = 3, inputs(transcode720, transcode1080, transcode2160), output = Vec<String>)]
#[derive(Debug, Clone)]
pub struct Transcode {
    pub journal: Journal,
    /// Both the 720 and the 1080 rendition wait here: only concurrent
    /// members get through.
    pub rendezvous: Arc<tokio::sync::Barrier>,
}

impl Transcode {
    pub fn new(journal: Journal) -> Self {
        Self {
            journal,
            rendezvous: Arc::new(tokio::sync::Barrier::new(2)),
        }
    }

    async fn render(&self, name: &str, fail: bool) -> Result<Rendition, StepError> {
        self.journal.push(format!("run {name}"));
        if fail {
            return Err(StepError::permanent(format!("{name} encoder crashed")));
        }
        Ok(Rendition { name: name.to_owned() })
    }
}

impl transcode::Steps for Transcode {
    async fn probe(&self, _cx: &StepContext, input: transcode::ProbeInput<'_>) -> Result<Metadata, StepError> {
        self.journal.push("run Probe");
        Ok(Metadata {
            height: input.request.height,
        })
    }

    async fn transcode720(
        &self,
        _cx: &StepContext,
        _input: transcode::Transcode720Input<'_>,
    ) -> Result<Rendition, StepError> {
        tokio::time::timeout(Duration::from_secs(5), self.rendezvous.wait())
            .await
            .map_err(|_| StepError::permanent("the 1080 rendition never ran alongside"))?;
        self.render("720", false).await
    }

    async fn transcode1080(
        &self,
        _cx: &StepContext,
        input: transcode::Transcode1080Input<'_>,
    ) -> Result<Rendition, StepError> {
        tokio::time::timeout(Duration::from_secs(5), self.rendezvous.wait())
            .await
            .map_err(|_| StepError::permanent("the 720 rendition never ran alongside"))?;
        self.render("1080", input.request.fail_1080).await
    }

    async fn transcode2160(
        &self,
        _cx: &StepContext,
        _input: transcode::Transcode2160Input<'_>,
    ) -> Result<Rendition, StepError> {
        self.render("2160", false).await
    }

    async fn publish(&self, _cx: &StepContext, input: transcode::PublishInput<'_>) -> Result<Vec<String>, StepError> {
        self.journal.push("run Publish");
        let mut names = vec![input.transcode720.name.clone(), input.transcode1080.name.clone()];
        if let Some(uhd) = input.transcode2160 {
            names.push(uhd.name.clone());
        }
        Ok(names)
    }

    async fn compensate_transcode720(
        &self,
        _cx: &StepContext,
        _r: &VideoRequest,
        _d: &Rendition,
    ) -> Result<(), StepError> {
        self.journal.push("undo 720");
        Ok(())
    }

    async fn compensate_transcode1080(
        &self,
        _cx: &StepContext,
        _r: &VideoRequest,
        _d: &Rendition,
    ) -> Result<(), StepError> {
        self.journal.push("undo 1080");
        Ok(())
    }

    async fn compensate_transcode2160(
        &self,
        _cx: &StepContext,
        _r: &VideoRequest,
        _d: &Rendition,
    ) -> Result<(), StepError> {
        self.journal.push("undo 2160");
        Ok(())
    }

    fn response(&self, outputs: transcode::Outputs<'_>) -> Result<VideoResponse, StepError> {
        Ok(VideoResponse {
            renditions: outputs.publish.clone(),
        })
    }
}

// ---------------------------------------------------------------- race

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FetchRequest {
    pub path: String,
}

/// Two mirrors race; the first to answer wins.
#[dtask::task(
    name = "FetchFastest",
    request = FetchRequest,
    response = String,
    queue = "mirrors",
    max_retries = 0,
    mode = InProcess
)]
#[parallel_group(Fastest, order = 1, await_all = false)]
#[custom_step(MirrorA, order = 1, group = Fastest, output = String)]
#[custom_step(MirrorB, order = 1, group = Fastest, output = String)]
#[compensation(MirrorA)]
#[compensation(MirrorB)]
#[derive(Debug, Clone, Default)]
pub struct FetchFastest {
    pub journal: Journal,
}

impl fetch_fastest::Steps for FetchFastest {
    async fn mirror_a(&self, _cx: &StepContext, input: fetch_fastest::MirrorAInput<'_>) -> Result<String, StepError> {
        self.journal.push("run MirrorA");
        Ok(format!("a:{}", input.request.path))
    }

    async fn mirror_b(&self, cx: &StepContext, _input: fetch_fastest::MirrorBInput<'_>) -> Result<String, StepError> {
        self.journal.push("run MirrorB");
        cx.cancelled().await;
        self.journal.push("MirrorB saw its token fire");
        Err(StepError::cancelled())
    }

    async fn compensate_mirror_a(&self, _cx: &StepContext, _r: &FetchRequest, _d: &String) -> Result<(), StepError> {
        self.journal.push("undo MirrorA");
        Ok(())
    }

    async fn compensate_mirror_b(&self, _cx: &StepContext, _r: &FetchRequest, _d: &String) -> Result<(), StepError> {
        self.journal.push("undo MirrorB");
        Ok(())
    }

    fn response(&self, outputs: fetch_fastest::Outputs<'_>) -> Result<String, StepError> {
        outputs
            .mirror_a
            .or(outputs.mirror_b)
            .cloned()
            .ok_or_else(|| StepError::permanent("no mirror answered"))
    }
}

/// In-memory services an API host and a worker host share, standing in
/// for RabbitMQ, Redis and S3.
pub fn shared_infrastructure() -> dtask::Infrastructure {
    use dtask::memory::{
        MemoryIdempotencyStore, MemoryLock, MemoryObjectStore, MemoryProgressTracker, MemoryQueue, MemoryStateStore,
    };
    let queue = MemoryQueue::new();
    dtask::Infrastructure {
        storage: Arc::new(MemoryObjectStore::new()),
        publisher: Arc::new(queue.clone()),
        consumer: Arc::new(queue.clone()),
        lock: Arc::new(MemoryLock::new()),
        progress: Arc::new(MemoryProgressTracker::new()),
        state: Arc::new(MemoryStateStore::new()),
        idempotency: Arc::new(MemoryIdempotencyStore::new()),
        dead_letters: Some(Arc::new(queue)),
        workers: None,
        depths: None,
        cancellations: None,
        settlement: None,
        lock_with_state: None,
    }
}

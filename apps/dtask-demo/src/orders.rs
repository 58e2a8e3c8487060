//! The design's "Toward BPM" pair, linked with `#[depends_on]`:
//! **ValidateInventory** (CheckStock, ReserveItems) and **ChargePayment**
//! (AuthorizeCard, CapturePayment). ChargePayment starts when
//! ValidateInventory completes with every item in stock; its request is
//! built from ValidateInventory's response by [`charge_for`].
//!
//! ChargePayment's failure leaves the validated order alone (its
//! reservation stands): each task compensates only its own steps. An edge
//! declared `compensate_upstream` changes that; see `docs/dsl.md#depends_on`
//! and the demo's `tests/depends_on.rs`, which declares such a charge.
//!
//! The stock and the card gateway are in memory ([`Stock`], [`Gateway`]):
//! the example is about the chaining, not about warehouses and banks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use dtask::prelude::*;
use serde::{Deserialize, Serialize};

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    /// The item.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Its price, in cents.
    pub unit_price_cents: u64,
}

/// An order to validate (and, once validated, to charge).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRequest {
    /// The order's id.
    pub order_id: String,
    /// What it holds.
    pub lines: Vec<OrderLine>,
    /// The card to charge (a token from the payment provider).
    pub card_token: String,
}

/// What CheckStock found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockCheck {
    /// Whether every line is in stock.
    pub all_in_stock: bool,
    /// The items short of stock.
    pub missing: Vec<String>,
}

/// What ReserveItems reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// Item and quantity reserved.
    pub items: Vec<(String, u32)>,
}

/// ValidateInventory's response: what ChargePayment's condition reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryReport {
    /// The order.
    pub order_id: String,
    /// Whether every line is in stock (and reserved).
    pub all_in_stock: bool,
    /// The items short of stock.
    pub missing: Vec<String>,
    /// The order's total, in cents.
    pub amount_cents: u64,
    /// The card to charge.
    pub card_token: String,
}

/// ChargePayment's request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeRequest {
    /// The order.
    pub order_id: String,
    /// How much, in cents.
    pub amount_cents: u64,
    /// The card.
    pub card_token: String,
}

/// ChargePayment's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// The order.
    pub order_id: String,
    /// The captured payment's id.
    pub payment_id: String,
    /// How much was captured, in cents.
    pub amount_cents: u64,
}

impl Receipt {
    /// The receipt of `request`, charged as payment `payment_id`.
    pub fn of(request: &ChargeRequest, payment_id: &str) -> Self {
        Self {
            order_id: request.order_id.clone(),
            payment_id: payment_id.to_owned(),
            amount_cents: request.amount_cents,
        }
    }
}

/// The warehouse: quantity in stock per item.
#[derive(Debug, Clone, Default)]
pub struct Stock(Arc<Mutex<BTreeMap<String, u32>>>);

impl Stock {
    /// A stock holding `items`.
    pub fn with(items: impl IntoIterator<Item = (&'static str, u32)>) -> Self {
        Self(Arc::new(Mutex::new(
            items.into_iter().map(|(sku, n)| (sku.to_owned(), n)).collect(),
        )))
    }

    /// How many of `sku` are left.
    pub fn left(&self, sku: &str) -> u32 {
        self.lock().get(sku).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u32>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The card gateway: authorizations and captures, by payment id.
#[derive(Debug, Clone, Default)]
pub struct Gateway(Arc<Mutex<BTreeMap<String, (u64, bool)>>>);

impl Gateway {
    /// Authorizes `request`'s amount on its card: the payment's id. A card
    /// token starting with `declined` is declined, for good.
    ///
    /// # Errors
    /// A permanent error for a declined card.
    pub fn authorize(&self, request: &ChargeRequest) -> Result<String, StepError> {
        if request.card_token.starts_with("declined") {
            return Err(StepError::permanent("the card was declined"));
        }
        let id = format!("pay-{}", request.order_id);
        self.lock().insert(id.clone(), (request.amount_cents, false));
        Ok(id)
    }

    /// Drops the authorization `payment` (compensating [`Gateway::authorize`]).
    pub fn release(&self, payment: &str) {
        self.lock().remove(payment);
    }

    /// Captures the authorized `payment`.
    ///
    /// # Errors
    /// A permanent error when the authorization is gone.
    pub fn capture(&self, payment: &str) -> Result<String, StepError> {
        let mut payments = self.lock();
        let authorized =
            (payments.get_mut(payment)).ok_or_else(|| StepError::permanent("the authorization is gone"))?;
        authorized.1 = true;
        Ok(payment.to_owned())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (u64, bool)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The captured payments: id and amount.
    pub fn captured(&self) -> Vec<(String, u64)> {
        self.lock()
            .iter()
            .filter(|(_, (_, captured))| *captured)
            .map(|(id, (amount, _))| (id.clone(), *amount))
            .collect()
    }
}

/// Checks and reserves an order's items.
#[dtask::task(
    name = "ValidateInventory",
    request = OrderRequest,
    response = InventoryReport,
    queue = "orders",
    max_retries = 2,
    mode = InProcess
)]
#[custom_step(CheckStock, order = 1, output = StockCheck)]
#[custom_step(ReserveItems, order = 2, inputs(check_stock), output = Reservation)]
#[condition(ReserveItems, check_stock.all_in_stock)]
#[compensation(ReserveItems)]
#[derive(Debug, Clone, Default)]
pub struct ValidateInventory {
    /// The warehouse.
    pub stock: Stock,
}

impl validate_inventory::Steps for ValidateInventory {
    async fn check_stock(
        &self,
        _cx: &StepContext,
        input: validate_inventory::CheckStockInput<'_>,
    ) -> Result<StockCheck, StepError> {
        let stock = self.stock.lock();
        let missing: Vec<String> = (input.request.lines.iter())
            .filter(|line| stock.get(&line.sku).copied().unwrap_or(0) < line.quantity)
            .map(|line| line.sku.clone())
            .collect();
        Ok(StockCheck {
            all_in_stock: missing.is_empty(),
            missing,
        })
    }

    async fn reserve_items(
        &self,
        _cx: &StepContext,
        input: validate_inventory::ReserveItemsInput<'_>,
    ) -> Result<Reservation, StepError> {
        let mut stock = self.stock.lock();
        let lines = &input.request.lines;
        if lines
            .iter()
            .any(|l| stock.get(&l.sku).copied().unwrap_or(0) < l.quantity)
        {
            return Err(StepError::permanent("the stock changed since it was checked"));
        }
        for line in lines {
            *stock.entry(line.sku.clone()).or_default() -= line.quantity;
        }
        Ok(Reservation {
            items: lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect(),
        })
    }

    async fn compensate_reserve_items(
        &self,
        _cx: &StepContext,
        _request: &OrderRequest,
        data: &Reservation,
    ) -> Result<(), StepError> {
        let mut stock = self.stock.lock();
        for (sku, quantity) in &data.items {
            *stock.entry(sku.clone()).or_default() += quantity;
        }
        Ok(())
    }

    fn response(&self, outputs: validate_inventory::Outputs<'_>) -> Result<InventoryReport, StepError> {
        let request = outputs.request;
        Ok(InventoryReport {
            order_id: request.order_id.clone(),
            all_in_stock: outputs.check_stock.all_in_stock && outputs.reserve_items.is_some(),
            missing: outputs.check_stock.missing.clone(),
            amount_cents: request
                .lines
                .iter()
                .map(|l| l.unit_price_cents * u64::from(l.quantity))
                .sum(),
            card_token: request.card_token.clone(),
        })
    }
}

/// ChargePayment's request, from ValidateInventory's response.
pub fn charge_for(report: &InventoryReport) -> ChargeRequest {
    ChargeRequest {
        order_id: report.order_id.clone(),
        amount_cents: report.amount_cents,
        card_token: report.card_token.clone(),
    }
}

/// Charges a validated order: authorizes the card, then captures.
#[dtask::task(
    name = "ChargePayment",
    request = ChargeRequest,
    response = Receipt,
    queue = "orders",
    max_retries = 1,
    mode = InProcess
)]
#[depends_on(ValidateInventory, condition = response.all_in_stock, request = charge_for)]
#[custom_step(AuthorizeCard, order = 1, output = String)]
#[compensation(AuthorizeCard)]
#[custom_step(CapturePayment, order = 2, inputs(authorize_card), output = String)]
#[derive(Debug, Clone, Default)]
pub struct ChargePayment {
    /// The card gateway.
    pub gateway: Gateway,
}

impl charge_payment::Steps for ChargePayment {
    async fn authorize_card(
        &self,
        _cx: &StepContext,
        input: charge_payment::AuthorizeCardInput<'_>,
    ) -> Result<String, StepError> {
        self.gateway.authorize(input.request)
    }

    async fn compensate_authorize_card(
        &self,
        _cx: &StepContext,
        _request: &ChargeRequest,
        data: &String,
    ) -> Result<(), StepError> {
        self.gateway.release(data);
        Ok(())
    }

    async fn capture_payment(
        &self,
        _cx: &StepContext,
        input: charge_payment::CapturePaymentInput<'_>,
    ) -> Result<String, StepError> {
        self.gateway.capture(input.authorize_card)
    }

    fn response(&self, outputs: charge_payment::Outputs<'_>) -> Result<Receipt, StepError> {
        Ok(Receipt::of(outputs.request, outputs.capture_payment))
    }
}

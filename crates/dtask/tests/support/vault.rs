//! A task whose request must not be readable in the infrastructure
//! (`encrypt_messages`), its twin declared without the flag, and helpers
//! of the encryption tests.

#![allow(dead_code, missing_docs, unreachable_pub)]

use dtask::codec::KeyRing;
use dtask::prelude::*;
use serde::{Deserialize, Serialize};

/// What the tests look for in raw bytes: it is in every marked request.
pub const MARKER: &str = "IBAN-MARKER-7f3a9c41";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Deposit {
    pub account: String,
    pub amount: u64,
}

impl Deposit {
    pub fn marked() -> Self {
        Self {
            account: MARKER.to_owned(),
            amount: 1200,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub account: String,
    pub amount: u64,
}

#[dtask::task(name = "Vault", request = Deposit, response = Receipt, queue = "vault", encrypt_messages)]
#[custom_step(Credit, order = 1, output = Receipt)]
#[derive(Debug, Clone, Default)]
pub struct Vault;

impl vault::Steps for Vault {
    async fn credit(&self, _cx: &StepContext, input: vault::CreditInput<'_>) -> Result<Receipt, StepError> {
        Ok(Receipt {
            account: input.request.account.clone(),
            amount: input.request.amount,
        })
    }

    fn response(&self, outputs: vault::Outputs<'_>) -> Result<Receipt, StepError> {
        Ok(outputs.credit.clone())
    }
}

/// `Vault` as a producer that does not demand sealing declares it.
#[dtask::task(name = "Vault", request = Deposit, response = Receipt, queue = "vault")]
#[custom_step(Credit, order = 1, output = Receipt)]
#[derive(Debug, Clone, Default)]
pub struct PlainVault;

impl plain_vault::Steps for PlainVault {
    async fn credit(&self, _cx: &StepContext, input: plain_vault::CreditInput<'_>) -> Result<Receipt, StepError> {
        Ok(Receipt {
            account: input.request.account.clone(),
            amount: input.request.amount,
        })
    }

    fn response(&self, outputs: plain_vault::Outputs<'_>) -> Result<Receipt, StepError> {
        Ok(outputs.credit.clone())
    }
}

/// A ring of the named keys, each 32 bytes derived from its id (tests only).
pub fn key_ring(ids: &[&str]) -> KeyRing {
    KeyRing::new(ids.iter().map(|id| {
        let mut key = [0u8; 32];
        for (slot, byte) in key.iter_mut().zip(id.bytes().cycle()) {
            *slot = byte;
        }
        (*id, key)
    }))
    .expect("a valid key ring")
}

/// Whether `haystack` holds `needle`'s bytes anywhere.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

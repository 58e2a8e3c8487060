//! The test database: `DTASK_DATABASE_URL`, else the one `scripts/test`
//! creates (role `dtask`, database `dtask_test` on 127.0.0.1:5432).

#![allow(dead_code)]

use std::time::Duration;

use dtask_postgres::{PostgresBackends, PostgresConfig};

pub(crate) const DEFAULT_URL: &str = "postgres://dtask:dtask@127.0.0.1:5432/dtask_test";

pub(crate) fn url() -> String {
    std::env::var("DTASK_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

pub(crate) fn config() -> PostgresConfig {
    PostgresConfig::new(url())
        .with_connect_timeout(Duration::from_secs(5))
        .with_visibility_timeout(Duration::from_secs(2))
        .with_poll_interval(Duration::from_millis(200))
}

/// Connects (and migrates), or fails the test saying how to get a database.
pub(crate) async fn connect(config: &PostgresConfig) -> PostgresBackends {
    config.connect().await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {} (run scripts/test, which creates the role and database): {e}",
            config.redacted_url()
        )
    })
}

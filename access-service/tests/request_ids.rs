//! Request ids are remembered for REQUEST_ID_RETENTION_DAYS, then forgotten.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

#[tokio::test]
async fn request_ids_older_than_the_retention_are_forgotten_and_newer_kept() {
    let db = common::database().await;
    let client = db.client().await;
    for (table, columns, values) in [
        (
            "unlock_requests",
            "tenant_id, request_id, fingerprint, finished, create_time",
            "'t1', $1, '\\x00', true, now() - $2::text::interval",
        ),
        (
            "request_fingerprints",
            "tenant_id, operation, request_id, fingerprint, create_time",
            "'t1', 'CreateDoor', $1, '\\x00', now() - $2::text::interval",
        ),
    ] {
        for (id, age) in [("old", "31 days"), ("new", "29 days")] {
            client
                .execute(
                    &format!("INSERT INTO access.{table} ({columns}) VALUES ({values})"),
                    &[&id, &age],
                )
                .await
                .unwrap();
        }
    }
    let mut config = common::config(db.url());
    config.request_id_retention_days = 30;
    let _server = common::start(config).await;
    let remaining = || async {
        client
            .query(
                "SELECT request_id FROM access.unlock_requests \
                 UNION ALL SELECT request_id FROM access.request_fingerprints ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    for _ in 0..500 {
        if remaining().await == ["new", "new"] {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "old request ids were not forgotten: {:?}",
        remaining().await
    );
}

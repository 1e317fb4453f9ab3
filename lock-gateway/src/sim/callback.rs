//! Callbacks POSTed to the application's URL when records are created, in the encoding
//! TTLock uses (reference §8.2): a form with `lockId, notifyType, records, admin,
//! lockMac` in that order, `records` a JSON string.

use std::sync::Arc;

use serde::Serialize;

use super::Shared;
use super::state::SimRecord;

/// A record as callbacks carry it; field order as observed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CallbackRecord<'a> {
    lock_id: i64,
    electric_quantity: i32,
    server_date: i64,
    record_type_from_lock: i32,
    record_type: i32,
    success: i32,
    lock_mac: &'a str,
    keyboard_pwd: &'a str,
    lock_date: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
}

/// The form fields of one callback.
pub fn callback_form(record: &SimRecord, lock_mac: &str, admin: &str) -> Vec<(String, String)> {
    let records = serde_json::to_string(&[CallbackRecord {
        lock_id: record.lock_id,
        electric_quantity: record.electric_quantity,
        server_date: record.server_date,
        record_type_from_lock: record.record_type_from_lock,
        record_type: record.record_type,
        success: i32::from(record.success),
        lock_mac,
        keyboard_pwd: &record.keyboard_pwd,
        lock_date: record.lock_date,
        username: record.username.as_deref(),
    }])
    .unwrap_or_else(|_| "[]".to_owned());
    vec![
        ("lockId".to_owned(), record.lock_id.to_string()),
        ("notifyType".to_owned(), "1".to_owned()),
        ("records".to_owned(), records),
        ("admin".to_owned(), admin.to_owned()),
        ("lockMac".to_owned(), lock_mac.to_owned()),
    ]
}

/// Sends one callback per record in the background, if a URL is configured.
pub(crate) fn deliver(shared: &Arc<Shared>, records: Vec<SimRecord>) {
    if records.is_empty() {
        return;
    }
    let (url, forms) = {
        let state = shared.lock();
        let Some(url) = state.callback_url.clone() else {
            return;
        };
        let forms: Vec<_> = records
            .iter()
            .filter_map(|r| {
                let (mac, admin) = state.callback_identity(r.lock_id)?;
                Some(callback_form(r, &mac, &admin))
            })
            .collect();
        (url, forms)
    };
    let shared = shared.clone();
    // In order, one after the other, like a single sender.
    tokio::spawn(async move {
        for form in forms {
            let delivered = shared
                .http
                .post(&url)
                .form(&form)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let mut state = shared.lock();
            if delivered {
                state.stats.callbacks_delivered += 1;
            } else {
                state.stats.callbacks_failed += 1;
            }
        }
    });
}

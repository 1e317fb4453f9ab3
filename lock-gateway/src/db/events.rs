//! Device events, numbered per tenant by a locked head row so cursors are committed in
//! the order they are handed out.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::schema::{device_event_heads, device_events};

/// The channel every append notifies, with the tenant id as payload.
pub const CHANNEL: &str = "latchkey_device_events";

#[derive(Debug, Clone, PartialEq, Eq, Insertable, Queryable, Selectable)]
#[diesel(table_name = device_events)]
pub struct EventRow {
    pub tenant_id: String,
    pub cursor: i64,
    pub account_id: Option<Uuid>,
    pub lock_id: i64,
    pub kind: String,
    pub source: String,
    pub success: bool,
    pub credential: String,
    pub username: String,
    pub battery_percent: i32,
    pub record_type: i32,
    pub passcode_id: i64,
    pub gateway_id: i64,
    pub occur_time: DateTime<Utc>,
    pub receive_time: DateTime<Utc>,
    pub detail: String,
    pub dedupe_key: Option<Vec<u8>>,
    /// A callback record's delivery; its `dedupe_key` is then the record's own digest
    /// until [`append`] settles which occurrence it is.
    pub delivery_key: Option<Vec<u8>>,
}

/// How many occurrences of a record one query looks at.
const PROBE: u32 = 4;

/// The key of the `n`-th record alike (see `events::MaskedRecord`). The first keeps the
/// record's own digest, the key records had before records alike were counted.
pub fn occurrence_key(record: &[u8], n: u32) -> Vec<u8> {
    if n == 0 {
        return record.to_vec();
    }
    Sha256::new()
        .chain_update(b"latchkey/gateway/occurrence")
        .chain_update(record)
        .chain_update(n.to_be_bytes())
        .finalize()
        .to_vec()
}

/// Appends the rows (their `cursor` is assigned here) that are not already stored under
/// their dedupe key or, for callback records, their delivery; returns the appended rows. Must run inside a transaction: the head
/// row stays locked until it commits.
pub async fn append(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    rows: Vec<EventRow>,
) -> QueryResult<Vec<EventRow>> {
    if rows.is_empty() {
        return Ok(rows);
    }
    // Lock the head first: every append of the tenant waits here, so the duplicate check
    // below cannot race another append.
    let head: i64 = diesel::insert_into(device_event_heads::table)
        .values((
            device_event_heads::tenant_id.eq(tenant_id),
            device_event_heads::last_cursor.eq(0_i64),
        ))
        .on_conflict(device_event_heads::tenant_id)
        .do_update()
        .set(device_event_heads::last_cursor.eq(device_event_heads::last_cursor))
        .returning(device_event_heads::last_cursor)
        .get_result(conn)
        .await?;
    let mut rows = settle_deliveries(conn, tenant_id, rows).await?;
    let keys: Vec<Vec<u8>> = rows.iter().filter_map(|r| r.dedupe_key.clone()).collect();
    let known: Vec<Option<Vec<u8>>> = if keys.is_empty() {
        Vec::new()
    } else {
        device_events::table
            .filter(device_events::tenant_id.eq(tenant_id))
            .filter(device_events::dedupe_key.eq_any(&keys))
            .select(device_events::dedupe_key)
            .load(conn)
            .await?
    };
    let mut seen: std::collections::HashSet<Vec<u8>> = known.into_iter().flatten().collect();
    rows.retain(|r| match &r.dedupe_key {
        Some(key) => seen.insert(key.clone()),
        None => true,
    });
    if rows.is_empty() {
        return Ok(rows);
    }
    for (offset, row) in rows.iter_mut().enumerate() {
        row.tenant_id = tenant_id.to_owned();
        row.cursor = head + 1 + offset as i64;
    }
    let last = head + rows.len() as i64;
    diesel::insert_into(device_events::table)
        .values(&rows)
        .execute(conn)
        .await?;
    diesel::update(device_event_heads::table.find(tenant_id))
        .set(device_event_heads::last_cursor.eq(last))
        .execute(conn)
        .await?;
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<diesel::sql_types::Text, _>(CHANNEL)
        .bind::<diesel::sql_types::Text, _>(tenant_id)
        .execute(conn)
        .await?;
    Ok(rows)
}

/// Settles the rows that carry a delivery (callback records): a delivery already stored
/// is a redelivery and dropped; any other takes the first occurrence of its record that
/// no delivery holds. If an event without a delivery holds that one (from the records
/// read, or stored before deliveries were kept), it is this very record: the delivery is
/// noted on it and nothing is appended. Runs under the head lock.
async fn settle_deliveries(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    rows: Vec<EventRow>,
) -> QueryResult<Vec<EventRow>> {
    let deliveries: Vec<Vec<u8>> = rows.iter().filter_map(|r| r.delivery_key.clone()).collect();
    if deliveries.is_empty() {
        return Ok(rows);
    }
    let stored: Vec<Option<Vec<u8>>> = device_events::table
        .filter(device_events::tenant_id.eq(tenant_id))
        .filter(device_events::delivery_key.eq_any(&deliveries))
        .select(device_events::delivery_key)
        .load(conn)
        .await?;
    let mut delivered: HashSet<Vec<u8>> = stored.into_iter().flatten().collect();
    // Keys of rows kept before this one, not stored yet.
    let mut taken: HashSet<Vec<u8>> = HashSet::new();
    let mut kept = Vec::with_capacity(rows.len());
    for mut row in rows {
        let (Some(delivery), Some(record)) = (row.delivery_key.clone(), row.dedupe_key.clone())
        else {
            taken.extend(row.dedupe_key.clone());
            kept.push(row);
            continue;
        };
        if !delivered.insert(delivery.clone()) {
            continue;
        }
        match first_undelivered(conn, tenant_id, &record, &taken).await? {
            Occurrence::Free(key) => {
                taken.insert(key.clone());
                row.dedupe_key = Some(key);
                kept.push(row);
            }
            Occurrence::Undelivered(cursor) => {
                diesel::update(device_events::table.find((tenant_id, cursor)))
                    .set(device_events::delivery_key.eq(delivery))
                    .execute(conn)
                    .await?;
            }
        }
    }
    Ok(kept)
}

enum Occurrence {
    /// No event holds this key yet.
    Free(Vec<u8>),
    /// An event without a delivery holds this occurrence, at this cursor.
    Undelivered(i64),
}

async fn first_undelivered(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    record: &[u8],
    taken: &HashSet<Vec<u8>>,
) -> QueryResult<Occurrence> {
    let mut start = 0;
    loop {
        let keys: Vec<Vec<u8>> = (start..start + PROBE)
            .map(|n| occurrence_key(record, n))
            .collect();
        let stored: HashMap<Vec<u8>, (i64, Option<Vec<u8>>)> = device_events::table
            .filter(device_events::tenant_id.eq(tenant_id))
            .filter(device_events::dedupe_key.eq_any(&keys))
            .select((
                device_events::dedupe_key.assume_not_null(),
                device_events::cursor,
                device_events::delivery_key,
            ))
            .load::<(Vec<u8>, i64, Option<Vec<u8>>)>(conn)
            .await?
            .into_iter()
            .map(|(key, cursor, delivery)| (key, (cursor, delivery)))
            .collect();
        for key in keys {
            match stored.get(&key) {
                None if !taken.contains(&key) => return Ok(Occurrence::Free(key)),
                Some((cursor, None)) => return Ok(Occurrence::Undelivered(*cursor)),
                _ => {}
            }
        }
        start += PROBE;
    }
}

/// Events of the tenant after `cursor`, oldest first.
pub async fn after(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    cursor: i64,
    limit: i64,
) -> QueryResult<Vec<EventRow>> {
    device_events::table
        .filter(device_events::tenant_id.eq(tenant_id))
        .filter(device_events::cursor.gt(cursor))
        .order(device_events::cursor.asc())
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)
        .await
}

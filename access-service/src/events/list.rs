//! Where a start points, and pages of events for backends that poll.

use diesel_async::AsyncPgConnection;
use latchkey::error::{ApiError, FieldViolations};
use latchkey::pb::access::v1 as pb;
use latchkey::pb::from_timestamp;

use super::cursor::{self, Position};
use super::filter::Filter;
use super::project;
use super::tail::BATCH;
use crate::code_keys::CodeKeys;
use crate::db::events as db;
use crate::device_events::apply::ACTOR as DEVICE;
use crate::error::Result;

/// Rows one ListEvents call examines at most, so a page over a long stretch of
/// filtered-out rows answers promptly; its token continues from there.
const MAX_EXAMINED: i64 = 5_000;

/// The position before the first row a `start` asks for. A cursor older than what is
/// kept is OUT_OF_RANGE naming the oldest cursor that is; a cursor not issued for this
/// tenant, or ahead of its log, is INVALID_ARGUMENT.
pub async fn resolve_start(
    conn: &mut AsyncPgConnection,
    keys: &CodeKeys,
    tenant_id: &str,
    start: Option<&pb::EventStart>,
    field: &str,
) -> Result<Position> {
    use pb::event_start::Position as Start;
    let bounds = db::bounds(conn, tenant_id).await?;
    match start.and_then(|start| start.position.as_ref()) {
        None | Some(Start::Now(_)) => Ok(Position::after_row(bounds.head)),
        Some(Start::SinceTime(time)) => {
            let Some(time) = from_timestamp(time) else {
                return Err(FieldViolations::single(
                    format!("{field}.since_time"),
                    "must be a valid timestamp",
                )
                .into());
            };
            Ok(Position::after_row(
                match db::first_at(conn, tenant_id, time).await? {
                    Some(first) => first - 1,
                    None => bounds.head,
                },
            ))
        }
        Some(Start::AfterCursor(text)) => {
            let field = format!("{field}.after_cursor");
            let Some(after) = cursor::decode(keys, tenant_id, text) else {
                return Err(FieldViolations::single(
                    field,
                    "is not a cursor issued for this tenant",
                )
                .into());
            };
            if after.sequence > bounds.head {
                return Err(FieldViolations::single(field, "is ahead of the tenant's log").into());
            }
            // Rows up to `oldest - 1` are gone; everything after `after` must be kept.
            let first_kept = if bounds.oldest == 0 {
                bounds.head + 1
            } else {
                bounds.oldest
            };
            if after.rows_done() + 1 < first_kept {
                let oldest = cursor::encode(keys, tenant_id, Position::after_row(first_kept - 1));
                return Err(ApiError::OutOfRange {
                    reason: "CURSOR_EXPIRED",
                    message: format!(
                        "events after this cursor were deleted by retention; the oldest \
                         cursor still available is {oldest}"
                    ),
                    metadata: vec![("oldest_cursor", oldest)],
                }
                .into());
            }
            Ok(after)
        }
    }
}

/// A page of events after `after`: up to `size` events, examining at most
/// [`MAX_EXAMINED`] rows. Returns the events, the position after the last row examined,
/// and whether the log's end was reached.
pub async fn page(
    conn: &mut AsyncPgConnection,
    keys: &CodeKeys,
    tenant_id: &str,
    filter: &Filter,
    after: Position,
    size: usize,
) -> Result<(Vec<pb::Event>, Position, bool)> {
    let mut events = Vec::new();
    let mut position = after.rows_done();
    let mut examined = 0;
    loop {
        let rows = db::after(conn, tenant_id, position, BATCH, DEVICE, db::Scope::ALL).await?;
        let end = (rows.len() as i64) < BATCH;
        for row in &rows {
            let row_events: Vec<pb::Event> = project::project(row, tenant_id, keys)
                .into_iter()
                .enumerate()
                .filter(|(index, event)| {
                    after.precedes(row.sequence, *index) && filter.matches(event)
                })
                .map(|(_, event)| event)
                .collect();
            // A row's events go on one page together: they share its cursor.
            if !row_events.is_empty()
                && events.len() + row_events.len() > size
                && !events.is_empty()
            {
                return Ok((events, Position::after_row(position), false));
            }
            events.extend(row_events);
            position = row.sequence;
            examined += 1;
            if events.len() >= size || examined >= MAX_EXAMINED {
                let at_end = end && rows.last().map(|r| r.sequence) == Some(position);
                return Ok((events, Position::after_row(position), at_end));
            }
        }
        if end {
            return Ok((events, Position::after_row(position), true));
        }
    }
}

//! Reading the audit log: filtered pages, export batches, chain verification, statistics
//! and failure bursts. Every query is scoped to one tenant.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::chain::{GENESIS, Verifier};
use super::store::Record;
use crate::db::schema::{audit_checkpoints, audit_heads, audit_log};

/// Actions that are access attempts (as opposed to administrative changes).
pub const ATTEMPT_ACTIONS: [&str; 5] = [
    "ACCESS_GRANTED",
    "ACCESS_DENIED",
    "UNLOCK",
    "LOCK",
    "UNLOCK_FAILED",
];

/// Conditions on rows; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub door_id: Option<String>,
    pub user_id: Option<String>,
    pub success: Option<bool>,
    pub action: Option<String>,
    pub method: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub flagged: Option<bool>,
}

type Boxed<'a> = audit_log::BoxedQuery<'a, diesel::pg::Pg>;

fn filtered<'a>(tenant: &'a str, filter: &'a Filter) -> Boxed<'a> {
    let mut query = audit_log::table
        .filter(audit_log::tenant_id.eq(tenant))
        .into_boxed();
    if let Some(door) = &filter.door_id {
        query = query.filter(audit_log::door_id.eq(door));
    }
    if let Some(user) = &filter.user_id {
        query = query.filter(audit_log::user_id.eq(user));
    }
    if let Some(success) = filter.success {
        query = query.filter(audit_log::success.eq(success));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_log::action.eq(action));
    }
    if let Some(method) = &filter.method {
        query = query.filter(audit_log::method.eq(method));
    }
    if let Some(start) = filter.start {
        query = query.filter(audit_log::time.ge(start));
    }
    if let Some(end) = filter.end {
        query = query.filter(audit_log::time.lt(end));
    }
    if let Some(flagged) = filter.flagged {
        query = query.filter(audit_log::flagged.eq(flagged));
    }
    query
}

/// Newest first, strictly before `before` (a sequence), `limit + 1` rows so the caller
/// can tell whether another page exists. Keyed by sequence, pages stay stable while
/// rows are appended.
pub async fn page(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    filter: &Filter,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<Record>> {
    let mut query = filtered(tenant, filter);
    if let Some(before) = before {
        query = query.filter(audit_log::sequence.lt(before));
    }
    query
        .order(audit_log::sequence.desc())
        .limit(limit + 1)
        .select(Record::as_select())
        .load(conn)
        .await
}

/// Oldest first, strictly after `after`, for export.
pub async fn batch_after(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    filter: &Filter,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<Record>> {
    filtered(tenant, filter)
        .filter(audit_log::sequence.gt(after))
        .order(audit_log::sequence.asc())
        .limit(limit)
        .select(Record::as_select())
        .load(conn)
        .await
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    sequence: i64,
) -> QueryResult<Option<Record>> {
    audit_log::table
        .find((tenant, sequence))
        .select(Record::as_select())
        .first(conn)
        .await
        .optional()
}

/// The result of recomputing a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub rows_checked: i64,
    pub first_broken: Option<i64>,
    pub detail: String,
    pub last_sequence: i64,
}

/// Where verification of rows from `from` starts: the row before it, a purge
/// checkpoint, or the chain's genesis.
async fn starting_point(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    from: i64,
) -> QueryResult<(i64, Vec<u8>)> {
    let checkpoint: Option<(i64, Vec<u8>)> = audit_checkpoints::table
        .filter(audit_checkpoints::tenant_id.eq(tenant))
        .order(audit_checkpoints::sequence.desc())
        .select((audit_checkpoints::sequence, audit_checkpoints::hash))
        .first(conn)
        .await
        .optional()?;
    if from <= 1 {
        return Ok(checkpoint.unwrap_or((0, GENESIS.to_vec())));
    }
    if let Some((sequence, hash)) = &checkpoint
        && *sequence >= from - 1
    {
        return Ok((*sequence, hash.clone()));
    }
    let previous: Option<Vec<u8>> = audit_log::table
        .find((tenant, from - 1))
        .select(audit_log::hash)
        .first(conn)
        .await
        .optional()?;
    Ok((from - 1, previous.unwrap_or_default()))
}

/// Recomputes `tenant`'s chain over `from..=to` (0 for open ends). A range reaching
/// the end is also checked against the chain head, so removed trailing rows are found.
///
/// An open range ends at the head as it is read before the rows: a head and the rows
/// behind it commit together, so rows appended while verification runs lie beyond it
/// rather than looking like rows the head says are missing.
pub async fn verify(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    from: i64,
    to: i64,
) -> QueryResult<Verification> {
    const BATCH: i64 = 5000;
    let head: Option<i64> = if to > 0 {
        None
    } else {
        audit_heads::table
            .find(tenant)
            .select(audit_heads::sequence)
            .first(conn)
            .await
            .optional()?
    };
    let end = if to > 0 { Some(to) } else { head };
    let (start, hash) = starting_point(conn, tenant, from).await?;
    let mut verifier = Verifier::starting_after(start, hash);
    let mut after = start;
    loop {
        let mut query = audit_log::table
            .filter(audit_log::tenant_id.eq(tenant))
            .filter(audit_log::sequence.gt(after))
            .into_boxed();
        if let Some(end) = end {
            query = query.filter(audit_log::sequence.le(end));
        }
        let rows: Vec<Record> = query
            .order(audit_log::sequence.asc())
            .limit(BATCH)
            .select(Record::as_select())
            .load(conn)
            .await?;
        let count = rows.len();
        for record in rows {
            after = record.sequence;
            verifier.check(&record.into_row());
        }
        if verifier.broken.is_some() || i64::try_from(count).unwrap_or(0) < BATCH {
            break;
        }
    }
    if verifier.broken.is_none()
        && let Some(sequence) = head
        && sequence >= verifier.next_sequence()
    {
        verifier.broken = Some((
            verifier.next_sequence(),
            format!(
                "the chain head is at {sequence}; rows after {} are missing",
                verifier.next_sequence() - 1
            ),
        ));
    }
    Ok(Verification {
        rows_checked: verifier.rows_checked,
        first_broken: verifier.broken.as_ref().map(|(sequence, _)| *sequence),
        detail: verifier
            .broken
            .map(|(_, detail)| detail)
            .unwrap_or_default(),
        last_sequence: after,
    })
}

#[derive(Debug, QueryableByName)]
struct Totals {
    #[diesel(sql_type = BigInt)]
    total: i64,
    #[diesel(sql_type = BigInt)]
    successes: i64,
    #[diesel(sql_type = BigInt)]
    unique_users: i64,
}

#[derive(Debug, QueryableByName)]
struct KeyCount {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Access statistics over attempts (not administrative changes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub total: i64,
    pub successes: i64,
    pub unique_users: i64,
    pub by_action: Vec<(String, i64)>,
    pub by_method: Vec<(String, i64)>,
    pub top_doors: Vec<(String, i64)>,
}

const STATS_SCOPE: &str = "tenant_id = $1 AND action = ANY($2) \
     AND ($3::timestamptz IS NULL OR time >= $3) AND ($4::timestamptz IS NULL OR time < $4) \
     AND ($5::text IS NULL OR door_id = $5)";

pub async fn stats(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    door: Option<&str>,
) -> QueryResult<Stats> {
    let actions: Vec<String> = ATTEMPT_ACTIONS.iter().map(|a| (*a).to_owned()).collect();
    macro_rules! scoped {
        ($sql:expr) => {
            diesel::sql_query($sql)
                .bind::<Text, _>(tenant)
                .bind::<diesel::sql_types::Array<Text>, _>(&actions)
                .bind::<Nullable<Timestamptz>, _>(start)
                .bind::<Nullable<Timestamptz>, _>(end)
                .bind::<Nullable<Text>, _>(door)
        };
    }
    let totals: Totals = scoped!(format!(
        "SELECT count(*) AS total, count(*) FILTER (WHERE success) AS successes, \
         count(DISTINCT NULLIF(user_id, '')) AS unique_users FROM audit_log WHERE {STATS_SCOPE}"
    ))
    .get_result(conn)
    .await?;
    let grouped = |column: &str, limit: &str| {
        format!(
            "SELECT {column} AS key, count(*) AS count FROM audit_log WHERE {STATS_SCOPE} \
             GROUP BY {column} ORDER BY count DESC, key {limit}"
        )
    };
    let by_action: Vec<KeyCount> = scoped!(grouped("action", "")).load(conn).await?;
    let by_method: Vec<KeyCount> = scoped!(grouped("method", "")).load(conn).await?;
    let top_doors: Vec<KeyCount> = scoped!(grouped("door_id", "LIMIT 10")).load(conn).await?;
    let pairs = |rows: Vec<KeyCount>| rows.into_iter().map(|r| (r.key, r.count)).collect();
    Ok(Stats {
        total: totals.total,
        successes: totals.successes,
        unique_users: totals.unique_users,
        by_action: pairs(by_action),
        by_method: pairs(by_method),
        top_doors: pairs(
            top_doors
                .into_iter()
                .filter(|r| !r.key.is_empty())
                .collect(),
        ),
    })
}

/// A user or IP address with a burst of failures.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Burst {
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Text)]
    pub value: String,
    #[diesel(sql_type = BigInt)]
    pub failed_attempts: i64,
    #[diesel(sql_type = Timestamptz)]
    pub first_time: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub last_time: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Array<Text>)]
    pub door_ids: Vec<String>,
}

/// Users and IP addresses with at least `threshold` failed attempts within some window
/// of `window_minutes`, between `start` and `end`. `failed_attempts` is the largest
/// count in one window.
pub async fn bursts(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    window_minutes: i32,
    threshold: i32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> QueryResult<Vec<Burst>> {
    let sql = "WITH failures AS ( \
           SELECT time, door_id, user_id, client_ip FROM audit_log \
           WHERE tenant_id = $1 AND NOT success AND action = ANY($2) AND time >= $3 AND time < $4), \
         actors AS ( \
           SELECT 'user' AS kind, user_id AS value, time, door_id FROM failures WHERE user_id <> '' \
           UNION ALL \
           SELECT 'ip', client_ip, time, door_id FROM failures WHERE client_ip <> ''), \
         windows AS ( \
           SELECT kind, value, time, door_id, count(*) OVER ( \
             PARTITION BY kind, value ORDER BY time \
             RANGE BETWEEN make_interval(mins => $5) PRECEDING AND CURRENT ROW) AS in_window \
           FROM actors) \
         SELECT kind, value, max(in_window) AS failed_attempts, min(time) AS first_time, \
                max(time) AS last_time, array_agg(DISTINCT door_id) FILTER (WHERE door_id <> '') AS door_ids \
         FROM windows GROUP BY kind, value HAVING max(in_window) >= $6 \
         ORDER BY failed_attempts DESC, kind, value";
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = Text)]
        value: String,
        #[diesel(sql_type = BigInt)]
        failed_attempts: i64,
        #[diesel(sql_type = Timestamptz)]
        first_time: DateTime<Utc>,
        #[diesel(sql_type = Timestamptz)]
        last_time: DateTime<Utc>,
        #[diesel(sql_type = Nullable<diesel::sql_types::Array<Text>>)]
        door_ids: Option<Vec<String>>,
    }
    let actions = vec!["ACCESS_DENIED".to_owned(), "UNLOCK_FAILED".to_owned()];
    let rows: Vec<Row> = diesel::sql_query(sql)
        .bind::<Text, _>(tenant)
        .bind::<diesel::sql_types::Array<Text>, _>(&actions)
        .bind::<Timestamptz, _>(start)
        .bind::<Timestamptz, _>(end)
        .bind::<Integer, _>(window_minutes)
        .bind::<BigInt, _>(i64::from(threshold))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Burst {
            kind: r.kind,
            value: r.value,
            failed_attempts: r.failed_attempts,
            first_time: r.first_time,
            last_time: r.last_time,
            door_ids: r.door_ids.unwrap_or_default(),
        })
        .collect())
}

#[derive(Debug, QueryableByName)]
pub struct Purged {
    #[diesel(sql_type = BigInt)]
    pub purged: i64,
    #[diesel(sql_type = BigInt)]
    pub checkpoint_sequence: i64,
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    pub checkpoint_hash: Vec<u8>,
}

/// Removes `tenant`'s rows before `before` through the purge function, which records the
/// checkpoint first.
pub async fn purge(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    before: DateTime<Utc>,
) -> QueryResult<Purged> {
    diesel::sql_query(
        "SELECT purged, checkpoint_sequence, checkpoint_hash FROM purge_audit_log($1, $2)",
    )
    .bind::<Text, _>(tenant)
    .bind::<Timestamptz, _>(before)
    .get_result(conn)
    .await
}

/// Tenants with an audit chain, for the retention job.
pub async fn tenants(conn: &mut AsyncPgConnection) -> QueryResult<Vec<String>> {
    audit_heads::table
        .select(audit_heads::tenant_id)
        .load(conn)
        .await
}

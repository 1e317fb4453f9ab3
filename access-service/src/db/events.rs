//! The audit log as events read it: rows after a position, with their door's property.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// The columns of an audit row an event needs.
#[derive(Debug, Clone, QueryableByName)]
pub struct Row {
    #[diesel(sql_type = BigInt)]
    pub sequence: i64,
    #[diesel(sql_type = Timestamptz)]
    pub time: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub actor: String,
    #[diesel(sql_type = Text)]
    pub action: String,
    #[diesel(sql_type = Text)]
    pub door_id: String,
    #[diesel(sql_type = Text)]
    pub door_name: String,
    #[diesel(sql_type = Text)]
    pub user_id: String,
    #[diesel(sql_type = Text)]
    pub user_name: String,
    #[diesel(sql_type = Text)]
    pub method: String,
    #[diesel(sql_type = Bool)]
    pub success: bool,
    #[diesel(sql_type = Text)]
    pub reason_code: String,
    #[diesel(sql_type = Text)]
    pub reason: String,
    #[diesel(sql_type = Text)]
    pub target_type: String,
    #[diesel(sql_type = Text)]
    pub target_id: String,
    /// Left empty for decisions: their evaluation steps are not part of an event.
    #[diesel(sql_type = Text)]
    pub metadata: String,
    #[diesel(sql_type = Bool)]
    pub flagged: bool,
    /// The door's property, when the door still exists.
    #[diesel(sql_type = Text)]
    pub property_id: String,
}

/// Which rows a read returns.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Rows up to this one only.
    pub upto: Option<i64>,
    /// Rows of these doors only.
    pub doors: Option<&'a [String]>,
    /// Decisions too (flagged ones and those a lock reported always come).
    pub decisions: bool,
}

impl Scope<'static> {
    /// Every row.
    pub const ALL: Self = Self {
        upto: None,
        doors: None,
        decisions: true,
    };
}

/// Up to `limit` rows of `tenant_id` after `after` within `scope`, in order. Decisions
/// come without their metadata (evaluation steps no event carries), but for those
/// recorded by `device_actor`, whose metadata says what the lock reported.
pub async fn after(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    after: i64,
    limit: i64,
    device_actor: &str,
    scope: Scope<'_>,
) -> diesel::QueryResult<Vec<Row>> {
    diesel::sql_query(
        "SELECT a.sequence, a.time, a.actor, a.action, a.door_id, a.door_name, a.user_id, \
                a.user_name, a.method, a.success, a.reason_code, a.reason, a.target_type, a.target_id, \
                CASE WHEN a.action IN ('ACCESS_GRANTED', 'ACCESS_DENIED') AND a.actor <> $4 \
                     THEN '' ELSE a.metadata END AS metadata, \
                a.flagged, coalesce(d.property_id::text, '') AS property_id \
         FROM audit_log a \
         LEFT JOIN doors d ON d.id = (CASE WHEN a.door_id ~ \
             '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' \
             THEN a.door_id::uuid END) AND d.tenant_id = a.tenant_id \
         WHERE a.tenant_id = $1 AND a.sequence > $2 \
           AND ($5::bigint IS NULL OR a.sequence <= $5) \
           AND ($6::text[] IS NULL OR a.door_id = ANY($6)) \
           AND ($7 OR a.flagged OR a.actor = $4 \
                OR a.action NOT IN ('ACCESS_GRANTED', 'ACCESS_DENIED')) \
         ORDER BY a.sequence LIMIT $3",
    )
    .bind::<Text, _>(tenant_id)
    .bind::<BigInt, _>(after)
    .bind::<BigInt, _>(limit)
    .bind::<Text, _>(device_actor)
    .bind::<Nullable<BigInt>, _>(scope.upto)
    .bind::<Nullable<Array<Text>>, _>(scope.doors)
    .bind::<Bool, _>(scope.decisions)
    .load(conn)
    .await
}

#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct Bounds {
    /// The last row appended (0 for a tenant with none).
    #[diesel(sql_type = BigInt)]
    pub head: i64,
    /// The oldest row kept; 0 when none is.
    #[diesel(sql_type = BigInt)]
    pub oldest: i64,
}

/// Where `tenant_id`'s log begins and ends.
pub async fn bounds(conn: &mut AsyncPgConnection, tenant_id: &str) -> diesel::QueryResult<Bounds> {
    diesel::sql_query(
        "SELECT coalesce((SELECT sequence FROM audit_heads WHERE tenant_id = $1), 0) AS head, \
                coalesce((SELECT min(sequence) FROM audit_log WHERE tenant_id = $1), 0) AS oldest",
    )
    .bind::<Text, _>(tenant_id)
    .get_result(conn)
    .await
}

#[derive(QueryableByName)]
struct Head {
    #[diesel(sql_type = BigInt)]
    head: i64,
}

/// The last row appended to `tenant_id`'s log (0 for a tenant with none): one index
/// lookup, for readers that follow the log every few milliseconds.
pub async fn head(conn: &mut AsyncPgConnection, tenant_id: &str) -> diesel::QueryResult<i64> {
    let found: Head = diesel::sql_query(
        "SELECT coalesce((SELECT sequence FROM audit_heads WHERE tenant_id = $1), 0) AS head",
    )
    .bind::<Text, _>(tenant_id)
    .get_result(conn)
    .await?;
    Ok(found.head)
}

#[derive(QueryableByName)]
struct First {
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    first: Option<i64>,
}

/// The first row recorded at or after `time`, if any.
pub async fn first_at(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    time: DateTime<Utc>,
) -> diesel::QueryResult<Option<i64>> {
    let found: First = diesel::sql_query(
        "SELECT min(sequence) AS first FROM audit_log WHERE tenant_id = $1 AND time >= $2",
    )
    .bind::<Text, _>(tenant_id)
    .bind::<Timestamptz, _>(time)
    .get_result(conn)
    .await?;
    Ok(found.first)
}

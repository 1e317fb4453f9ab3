//! Group commit. Decisions hand their entries to the writer and wait; the writer gathers
//! whatever has queued into runs, appends each run in one transaction and answers every
//! waiter only after the commit. Concurrent decisions share one commit, so durability
//! costs little throughput; nothing is answered that is not stored.
//!
//! A tenant's entries always go to the same worker, which remembers where it left the
//! tenant's chain: its next run is chained after that head at once and sent as one
//! statement that appends only if the head is still there ([`store::append_run`]), so a
//! run costs one round trip rather than a transaction's five. When the head has moved
//! (another replica or an administrative change appended), the run writes nothing and
//! is appended again under the head's lock. A tenant has one run in flight at a time:
//! its rows chain one after another, and a tenant's runs would only queue on its head
//! row, smaller and so costlier per row, if more were sent.
//!
//! Runs holding failed attempts are appended under the lock too: whether such a row
//! completes a burst is read from the committed log.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

use diesel_async::AsyncConnection;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use latchkey::db::DbPool;
use latchkey::error::ApiError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::store::{self, BurstRule, Head};
use super::{AuditEntry, AuditRow};

/// Group-commit settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Committing workers, each serving its share of the tenants.
    pub workers: usize,
    /// Most rows in one transaction.
    pub max_batch: usize,
    pub burst: BurstRule,
}

impl WriterConfig {
    /// The writer as the service's settings ask for it.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            workers: config.audit_writers.max(1),
            max_batch: config.audit_max_batch.clamp(1, 10_000),
            burst: BurstRule::from_config(config),
        }
    }
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            max_batch: 512,
            burst: BurstRule::default(),
        }
    }
}

type Reply = oneshot::Sender<Result<AuditRow, ApiError>>;

struct Pending {
    entry: AuditEntry,
    reply: Reply,
}

/// The handle decisions append through. Dropping every handle lets the workers flush
/// what is queued and stop.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    /// One queue per worker; a tenant's entries go to `senders[hash(tenant) % len]`.
    senders: Vec<mpsc::Sender<Pending>>,
    /// Set by [`AuditWriter::close`]: the workers stop taking entries, commit what is
    /// queued and stop, though handles remain.
    closing: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// Starts the workers on a thread of their own; the returned set ends once every
    /// handle is dropped and the queue is drained.
    ///
    /// Each run's commit is on the path of every decision in it, so the workers do not
    /// wait their turn behind request handling on the shared runtime. `pool` must be
    /// theirs alone: a connection is driven by the runtime that opened it.
    pub fn spawn(pool: DbPool, config: WriterConfig) -> (Self, JoinSet<()>) {
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..config.workers.max(1) {
            let (sender, receiver) = mpsc::channel::<Pending>(config.max_batch * 8);
            senders.push(sender);
            receivers.push(receiver);
        }
        let (closing, closing_seen) = tokio::sync::watch::channel(false);
        let (finished, finished_seen) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(async move {
                        let mut workers = JoinSet::new();
                        for receiver in receivers {
                            workers.spawn(
                                Worker::new(pool.clone(), config)
                                    .run(receiver, closing_seen.clone()),
                            );
                        }
                        workers.join_all().await;
                    }),
                    Err(error) => {
                        tracing::error!(%error, "the audit writer's runtime did not start");
                    }
                }
                let _ = finished.send(());
            });
        if let Err(error) = thread {
            // The queues' receivers are gone with the closure: appends fail, nothing
            // is answered unrecorded.
            tracing::error!(%error, "the audit writer's thread did not start");
        }
        let mut workers = JoinSet::new();
        workers.spawn(async move {
            let _ = finished_seen.await;
        });
        let closing = std::sync::Arc::new(closing);
        (Self { senders, closing }, workers)
    }

    /// Stops taking entries: what is queued is committed and the workers stop, even
    /// while calls abandoned at shutdown still hold handles.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Appends `entry` and returns it as stored, once committed.
    pub async fn append(&self, entry: AuditEntry) -> Result<AuditRow, ApiError> {
        let mut hasher = DefaultHasher::new();
        entry.tenant_id.hash(&mut hasher);
        let queue = &self.senders[(hasher.finish() % self.senders.len() as u64) as usize];
        let (reply, answer) = oneshot::channel();
        queue
            .send(Pending { entry, reply })
            .await
            .map_err(|_| ApiError::unavailable("SHUTTING_DOWN", "the service is shutting down"))?;
        answer
            .await
            .map_err(|_| ApiError::internal("the audit writer stopped before answering"))?
    }
}

/// One tenant's chain as a worker sees it.
#[derive(Default)]
struct Chain {
    /// Where the chain ends once the run in flight has committed; unknown at first and
    /// after a run did not commit as expected, until a run under the lock settles it.
    head: Option<Head>,
    in_flight: bool,
    /// In arrival order; a run that found the head elsewhere is put back in front.
    waiting: VecDeque<Pending>,
}

/// How one of a tenant's runs ended.
struct Report {
    tenant: String,
    outcome: Outcome,
}

/// What the worker needs to know of a finished run.
enum Outcome {
    /// Committed; a run under the lock also tells where the chain now ends.
    Committed(Option<Head>),
    /// Wrote nothing: the head was not where the run expected. Its entries come back.
    Stale(Vec<Pending>),
    /// Failed; every waiter in it has been told.
    Failed,
}

struct Worker {
    pool: DbPool,
    config: WriterConfig,
    chains: HashMap<String, Chain>,
    running: FuturesUnordered<BoxFuture<'static, Report>>,
}

impl Worker {
    fn new(pool: DbPool, config: WriterConfig) -> Self {
        Self {
            pool,
            config,
            chains: HashMap::new(),
            running: FuturesUnordered::new(),
        }
    }

    async fn run(
        mut self,
        mut receiver: mpsc::Receiver<Pending>,
        mut closing: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut incoming = Vec::with_capacity(self.config.max_batch);
        let mut open = true;
        let mut closed = false;
        loop {
            tokio::select! {
                biased;
                // Closing lets what is queued through; recv_many then ends the queue.
                changed = closing.wait_for(|closing| *closing), if !closed => {
                    closed = true;
                    if changed.is_ok() {
                        receiver.close();
                    }
                }
                Some(report) = self.running.next(), if !self.running.is_empty() => {
                    let tenant = self.finish(report);
                    self.dispatch(&tenant);
                }
                received = receiver.recv_many(&mut incoming, self.config.max_batch), if open => {
                    if received == 0 {
                        open = false;
                        continue;
                    }
                    let mut touched: Vec<String> = Vec::new();
                    for pending in incoming.drain(..) {
                        let tenant = &pending.entry.tenant_id;
                        if !touched.contains(tenant) {
                            touched.push(tenant.clone());
                        }
                        // A tenant's key is copied once, when the worker first sees it.
                        match self.chains.get_mut(tenant) {
                            Some(chain) => chain.waiting.push_back(pending),
                            None => {
                                let mut chain = Chain::default();
                                let tenant = tenant.clone();
                                chain.waiting.push_back(pending);
                                self.chains.insert(tenant, chain);
                            }
                        }
                    }
                    for tenant in touched {
                        self.dispatch(&tenant);
                    }
                }
                // Closed, and nothing in flight: dispatching never leaves a tenant with
                // waiting entries and no run in flight.
                else => break,
            }
        }
    }

    /// Takes a finished run's report; returns its tenant.
    fn finish(&mut self, report: Report) -> String {
        let Report { tenant, outcome } = report;
        let chain = self.chains.entry(tenant.clone()).or_default();
        chain.in_flight = false;
        match outcome {
            // A run under the lock tells where the chain now ends; after one sent
            // without it, the head the worker expected is right.
            Outcome::Committed(head) => {
                if head.is_some() {
                    chain.head = head;
                }
            }
            Outcome::Stale(pending) => {
                chain.head = None;
                for p in pending.into_iter().rev() {
                    chain.waiting.push_front(p);
                }
            }
            Outcome::Failed => chain.head = None,
        }
        tenant
    }

    /// Sends what `tenant` has waiting, unless a run of it is in flight.
    fn dispatch(&mut self, tenant: &str) {
        let Some(chain) = self.chains.get_mut(tenant) else {
            return;
        };
        if chain.in_flight || chain.waiting.is_empty() {
            return;
        }
        let max_batch = self.config.max_batch.max(1);
        let future = match &chain.head {
            Some(head) if !store::is_attempt_failure(&chain.waiting[0].entry) => {
                let take = chain
                    .waiting
                    .iter()
                    .take(max_batch)
                    .take_while(|p| !store::is_attempt_failure(&p.entry))
                    .count();
                let (entries, replies): (Vec<_>, Vec<_>) = chain
                    .waiting
                    .drain(..take)
                    .map(|p| (p.entry, p.reply))
                    .unzip();
                let rows = store::chain(head, entries, &[]);
                chain.head = Head::after(&rows);
                append_fast(
                    self.pool.clone(),
                    tenant.to_owned(),
                    rows,
                    replies,
                    self.config.burst,
                )
            }
            _ => {
                let take = chain.waiting.len().min(max_batch);
                let pending: Vec<Pending> = chain.waiting.drain(..take).collect();
                chain.head = None;
                append_locked(
                    self.pool.clone(),
                    tenant.to_owned(),
                    pending,
                    self.config.burst,
                )
            }
        };
        chain.in_flight = true;
        self.running.push(future);
    }
}

/// Appends rows chained after the expected head, without taking the lock first.
fn append_fast(
    pool: DbPool,
    tenant: String,
    rows: Vec<AuditRow>,
    replies: Vec<Reply>,
    burst: BurstRule,
) -> BoxFuture<'static, Report> {
    let span = tracing::debug_span!("audit append", rows = rows.len(), under_lock = false);
    Box::pin(
        async move {
            let appended: Result<bool, AppendError> = async {
                let mut conn = pool.get().await?;
                Ok(store::append_run(&mut conn, &rows).await?)
            }
            .await;
            let outcome = match appended {
                Ok(true) => {
                    answer(replies, rows);
                    Outcome::Committed(None)
                }
                Ok(false) => {
                    tracing::debug!(
                        "the chain head moved; the run is appended again under its lock"
                    );
                    let pending = rows
                        .into_iter()
                        .zip(replies)
                        .map(|(row, reply)| Pending {
                            entry: row.entry,
                            reply,
                        })
                        .collect();
                    Outcome::Stale(pending)
                }
                Err(error) if error.tied_to_rows() && rows.len() > 1 => {
                    tracing::warn!(error = %error.cause, "an audit run was refused; appending it again in parts");
                    let (entries, replies) = rows.into_iter().map(|row| row.entry).zip(replies).unzip();
                    append_in_parts(&pool, entries, replies, burst).await
                }
                Err(error) => {
                    fail(replies, &error.into());
                    Outcome::Failed
                }
            };
            Report { tenant, outcome }
        }
        .instrument(span),
    )
}

/// Appends entries in a transaction that locks the head, reading burst counts from the
/// committed log.
fn append_locked(
    pool: DbPool,
    tenant: String,
    pending: Vec<Pending>,
    burst: BurstRule,
) -> BoxFuture<'static, Report> {
    let span = tracing::debug_span!("audit append", rows = pending.len(), under_lock = true);
    Box::pin(
        async move {
            let (entries, replies) = pending.into_iter().map(|p| (p.entry, p.reply)).unzip();
            let outcome = append_in_parts(&pool, entries, replies, burst).await;
            Report { tenant, outcome }
        }
        .instrument(span),
    )
}

/// Appends entries under the head's lock. A run the database refuses for what its rows
/// hold is split in halves and each appended again, down to the one row at fault, so a
/// bad row fails its own caller and no one else's; a database that is away fails every
/// row left at once.
async fn append_in_parts(
    pool: &DbPool,
    entries: Vec<AuditEntry>,
    replies: Vec<Reply>,
    burst: BurstRule,
) -> Outcome {
    let mut parts = VecDeque::from([(entries, replies)]);
    let mut outcome = Outcome::Failed;
    while let Some((entries, mut replies)) = parts.pop_front() {
        // Kept to be split should the database refuse the run.
        let copies = entries.clone();
        let stored: Result<Vec<AuditRow>, AppendError> = async {
            let mut conn = pool.get().await?;
            let rows = conn
                .transaction(async |conn| store::append(conn, entries, burst).await)
                .await?;
            Ok(rows)
        }
        .await;
        match stored {
            Ok(rows) => {
                let head = Head::after(&rows);
                answer(replies, rows);
                outcome = Outcome::Committed(head);
            }
            Err(error) if error.tied_to_rows() && copies.len() > 1 => {
                let half = copies.len() / 2;
                let mut first = copies;
                let second = first.split_off(half);
                let later = replies.split_off(half);
                parts.push_front((second, later));
                parts.push_front((first, replies));
            }
            Err(error) if error.tied_to_rows() => {
                tracing::error!(error = %error.cause, "the database refused an audit row");
                for reply in replies {
                    let _ = reply.send(Err(ApiError::internal("the audit row was refused")));
                }
                outcome = Outcome::Failed;
            }
            Err(error) => {
                let error = ApiError::from(error);
                fail(replies, &error);
                for (_, replies) in parts.drain(..) {
                    fail(replies, &error);
                }
                return Outcome::Failed;
            }
        }
    }
    outcome
}

/// Why an append failed, and whether the rows themselves were the cause.
struct AppendError {
    cause: ApiError,
    /// The database answered and refused what the rows hold (a data or constraint
    /// error), as opposed to being away, busy or too slow.
    rows_refused: bool,
}

impl AppendError {
    fn tied_to_rows(&self) -> bool {
        self.rows_refused
    }
}

impl From<diesel::result::Error> for AppendError {
    fn from(error: diesel::result::Error) -> Self {
        let cause = ApiError::from(error);
        // Everything the database answers that is not about its own state: those are
        // mapped to UNAVAILABLE or ABORTED, a refusal of the rows' content is not.
        let rows_refused = !matches!(
            cause,
            ApiError::Unavailable { .. } | ApiError::Aborted { .. }
        );
        Self {
            cause,
            rows_refused,
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for AppendError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self {
            cause: ApiError::from(error),
            rows_refused: false,
        }
    }
}

impl From<AppendError> for ApiError {
    fn from(error: AppendError) -> Self {
        error.cause
    }
}

/// Answers every waiter of a committed run with its row.
fn answer(replies: Vec<Reply>, rows: Vec<AuditRow>) {
    tracing::trace!(rows = rows.len(), "audit run committed");
    for (reply, row) in replies.into_iter().zip(rows) {
        let _ = reply.send(Ok(row));
    }
}

/// Tells every waiter of a run that did not commit.
fn fail(replies: Vec<Reply>, error: &ApiError) {
    tracing::error!(%error, rows = replies.len(), "audit run failed; no decision in it is answered");
    for reply in replies {
        let _ = reply.send(Err(ApiError::unavailable(
            "AUDIT_UNAVAILABLE",
            "the decision could not be recorded",
        )));
    }
}

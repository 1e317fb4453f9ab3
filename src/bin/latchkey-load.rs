#![allow(clippy::print_stdout)]
//! Load generator: drives `CheckAccess` against a running access-service at a given
//! concurrency for a given time, then the same with health `Check` on the same server
//! as the baseline, and prints throughput, latency percentiles, errors and the ratio.
//!
//! `--seed-rules N` first creates a property, a door, a member and N rules in the
//! token's tenant (one granting the member, the rest for other roles), so the cost of a
//! large tenant can be compared with a small one. `--expect-denied` loads the denial
//! path instead: every answer must be a denial.
//!
//! `--token` may be given once per tenant: each tenant is seeded alike and the
//! requests in flight are shared out among them, so the cost of many tenants' chains
//! committing side by side can be compared with one tenant's.
//!
//! `--streams N` measures event streams under that load: CheckAccess runs once without
//! streams, then again with N `WatchEvents` streams open, each filtered to one of
//! `--stream-doors` doors, while a prober decides at `--probe-rate` per second on those
//! doors; it prints both throughputs, how long each probe's event took from being
//! recorded to reaching each stream, and (with `--server-pid`) the service's memory per
//! idle stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::access_service_client::AccessServiceClient;
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::pb::access::v1::event_service_client::EventServiceClient;
use latchkey::pb::access::v1::rule_service_client::RuleServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Parser)]
#[command(
    name = "latchkey-load",
    about = "CheckAccess load generator with a health Check baseline"
)]
struct Args {
    /// access-service URL.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// ADMIN bearer token of a tenant to load; repeat it to load several tenants.
    #[arg(long, env = "LATCHKEY_TOKEN", required = true, value_delimiter = ',')]
    token: Vec<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// HTTP/2 connections to spread the load over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Rules to create in each tenant before the run (0: use --door and --user as
    /// given, with a single token).
    #[arg(long, default_value_t = 10)]
    seed_rules: usize,
    #[arg(long, default_value = "")]
    door: String,
    #[arg(long, default_value = "")]
    user: String,
    /// Skip the health Check baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Count denied decisions as answered and granted ones as errors, to load the
    /// denial path (e.g. `--seed-rules 0` with a user who has no access).
    #[arg(long)]
    expect_denied: bool,
    /// While `CheckAccess` is loaded, change the first tenant's door every this many
    /// milliseconds (its location, as an edit or a lock's status report changes a door),
    /// to see what changes cost the decisions of a large tenant. 0: no changes.
    #[arg(long, default_value_t = 0)]
    churn_ms: u64,
    /// Event streams to hold open during a second CheckAccess phase (0: none).
    #[arg(long, default_value_t = 0)]
    streams: usize,
    /// Doors the streams are spread over, one door per stream.
    #[arg(long, default_value_t = 100)]
    stream_doors: usize,
    /// Decisions per second on the streams' doors, whose events are timed.
    #[arg(long, default_value_t = 50)]
    probe_rate: u64,
    /// access-service's process id, to read its memory before and after the streams open.
    #[arg(long)]
    server_pid: Option<u32>,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn authorized<T>(token: &MetadataValue<tonic::metadata::Ascii>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", token.clone());
    request
}

/// A property in the token's tenant; returns its id.
async fn create_property(
    directory: &mut DirectoryServiceClient<Channel>,
    token: &MetadataValue<tonic::metadata::Ascii>,
    name: &str,
) -> Result<String> {
    let request = pb::CreatePropertyRequest {
        property: Some(pb::Property {
            name: name.into(),
            time_zone: "Europe/Madrid".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    Ok(directory
        .create_property(authorized(token, request))
        .await?
        .into_inner()
        .id)
}

/// An active ROOM door of `property` (no membership needed to open it); returns its id.
async fn create_door(
    directory: &mut DirectoryServiceClient<Channel>,
    token: &MetadataValue<tonic::metadata::Ascii>,
    property: &str,
    name: &str,
) -> Result<String> {
    let request = pb::CreateDoorRequest {
        door: Some(pb::Door {
            property_id: property.to_owned(),
            name: name.into(),
            r#type: pb::DoorType::Room as i32,
            active: true,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    Ok(directory
        .create_door(authorized(token, request))
        .await?
        .into_inner()
        .id)
}

/// Creates a property, an ENTRANCE-free door (ROOM: no membership needed), a member and
/// `rules` rules on the door; returns the door and user ids.
async fn seed(
    channel: Channel,
    token: &MetadataValue<tonic::metadata::Ascii>,
    rules: usize,
) -> Result<(String, String)> {
    let mut directory = DirectoryServiceClient::new(channel.clone());
    let mut rule_service = RuleServiceClient::new(channel);
    let property = create_property(&mut directory, token, "Load test").await?;
    let door = create_door(&mut directory, token, &property, "Load door").await?;
    let user = directory
        .create_user(authorized(
            token,
            pb::CreateUserRequest {
                user: Some(pb::User {
                    name: "Load member".into(),
                    roles: vec!["member".into()],
                    active: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await?
        .into_inner();
    let started = Instant::now();
    for i in 0..rules {
        let granting = i == rules / 2;
        rule_service
            .create_rule(authorized(
                token,
                pb::CreateRuleRequest {
                    rule: Some(pb::Rule {
                        door_id: door.clone(),
                        name: format!("rule {i}"),
                        user_ids: if granting {
                            vec![user.id.clone()]
                        } else {
                            Vec::new()
                        },
                        roles: if granting {
                            Vec::new()
                        } else {
                            vec![format!("role-{i}")]
                        },
                        time_slots: Vec::new(),
                        active: true,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await?;
    }
    eprintln!(
        "seeded {rules} rules in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok((door, user.id))
}

/// Changes `target`'s door every `every` until `churning` is cleared; returns the
/// changes made and those that failed.
async fn churn_door(
    channel: Channel,
    target: Target,
    every: Duration,
    churning: Arc<AtomicBool>,
) -> (u64, u64) {
    let mut directory = DirectoryServiceClient::new(channel);
    let mut ticks = tokio::time::interval(every);
    let (mut changed, mut failed) = (0_u64, 0_u64);
    while churning.load(Ordering::Relaxed) {
        ticks.tick().await;
        let request = authorized(
            &target.token,
            pb::UpdateDoorRequest {
                door: Some(pb::Door {
                    id: target.door.clone(),
                    location: format!("churn {changed}"),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["location".into()],
                }),
                ..Default::default()
            },
        );
        match directory.update_door(request).await {
            Ok(_) => changed += 1,
            Err(_) => failed += 1,
        }
    }
    (changed, failed)
}

/// Opens `count` event streams, each filtered to one of `doors` (decisions included),
/// and records, for each event received, the time from its recording to its arrival.
struct Streams {
    latencies_us: Arc<std::sync::Mutex<Vec<u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    measuring: Arc<AtomicBool>,
}

impl Streams {
    async fn open(
        target: &str,
        token: &MetadataValue<tonic::metadata::Ascii>,
        doors: &[String],
        count: usize,
    ) -> Result<Self> {
        // Connections of their own, under a server's usual limit of concurrent
        // streams per connection (100 here; HTTP/2 servers often allow 100 to 200).
        let mut channels = Vec::new();
        for _ in 0..count.div_ceil(100) {
            channels.push(Endpoint::from_shared(target.to_owned())?.connect().await?);
        }
        let latencies_us = Arc::new(std::sync::Mutex::new(Vec::new()));
        let measuring = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::with_capacity(count);
        for index in 0..count {
            let mut client = EventServiceClient::new(channels[index / 100].clone());
            let request = authorized(
                token,
                pb::WatchEventsRequest {
                    filter: Some(pb::EventFilter {
                        door_ids: vec![doors[index % doors.len()].clone()],
                        include_decisions: true,
                        ..Default::default()
                    }),
                    start: None,
                },
            );
            let mut stream = client.watch_events(request).await?.into_inner();
            let (latencies_us, measuring) = (Arc::clone(&latencies_us), Arc::clone(&measuring));
            tasks.push(tokio::spawn(async move {
                while let Ok(Some(message)) = stream.message().await {
                    let Some(pb::watch_events_response::Item::Event(event)) = message.item else {
                        continue;
                    };
                    if !measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    let recorded = event
                        .record_time
                        .as_ref()
                        .and_then(latchkey::pb::from_timestamp);
                    if let Some(recorded) = recorded {
                        let waited = (chrono::Utc::now() - recorded)
                            .num_microseconds()
                            .unwrap_or(0);
                        latencies_us
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(u64::try_from(waited).unwrap_or(0));
                    }
                }
            }));
        }
        Ok(Self {
            latencies_us,
            tasks,
            measuring,
        })
    }
}

/// `count` doors in a property of their own, with no rules: decisions on them are
/// denials, each an event for the streams filtered to its door.
async fn seed_doors(
    channel: Channel,
    token: &MetadataValue<tonic::metadata::Ascii>,
    count: usize,
) -> Result<Vec<String>> {
    let mut directory = DirectoryServiceClient::new(channel);
    let property = create_property(&mut directory, token, "Stream doors").await?;
    let mut doors = Vec::with_capacity(count);
    for index in 0..count {
        let door = create_door(&mut directory, token, &property, &format!("Flat {index}")).await?;
        doors.push(door);
    }
    Ok(doors)
}

/// The resident memory of process `pid`, in KiB.
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Decides on `doors` in turn at `rate` per second until `probing` is cleared.
async fn probe(
    channel: Channel,
    target: Target,
    doors: Vec<String>,
    rate: u64,
    probing: Arc<AtomicBool>,
) -> u64 {
    let mut client = AccessServiceClient::new(channel);
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let mut sent = 0_u64;
    while probing.load(Ordering::Relaxed) {
        ticks.tick().await;
        let door = &doors[usize::try_from(sent).unwrap_or(0) % doors.len()];
        let request = authorized(
            &target.token,
            pb::CheckAccessRequest {
                door_id: door.clone(),
                user_id: target.user.clone(),
                method: pb::AccessMethod::Card as i32,
                client_ip: "127.0.0.2".into(),
                request_id: String::new(),
                code: String::new(),
            },
        );
        if client.check_access(request).await.is_ok() {
            sent += 1;
        }
    }
    sent
}

#[derive(Debug, Default)]
struct Phase {
    latencies_us: Vec<u64>,
    errors: u64,
    elapsed: Duration,
}

impl Phase {
    fn report(&mut self, name: &str) -> f64 {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        let pct = |p: f64| {
            if n == 0 {
                0.0
            } else {
                let index = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
                self.latencies_us[index] as f64 / 1000.0
            }
        };
        let throughput = n as f64 / self.elapsed.as_secs_f64();
        println!(
            "{name:<12} {throughput:>10.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  ok {n}  errors {}",
            pct(0.50),
            pct(0.99),
            pct(0.999),
            self.errors
        );
        throughput
    }
}

async fn drive<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Phase
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let (call, stop, errors) = (Arc::clone(&call), Arc::clone(&stop), Arc::clone(&errors));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            while !stop.load(Ordering::Relaxed) {
                let begin = Instant::now();
                if call(worker).await {
                    latencies.push(u64::try_from(begin.elapsed().as_micros()).unwrap_or(u64::MAX));
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut phase = Phase::default();
    for worker in workers {
        if let Ok(latencies) = worker.await {
            phase.latencies_us.extend(latencies);
        }
    }
    phase.elapsed = started.elapsed();
    phase.errors = errors.load(Ordering::Relaxed);
    phase
}

/// What one tenant's requests carry.
#[derive(Debug, Clone)]
struct Target {
    token: MetadataValue<tonic::metadata::Ascii>,
    door: String,
    user: String,
}

/// One CheckAccess phase at the configured concurrency over every target.
async fn check_access(args: &Args, channels: &[Channel], targets: &[Target]) -> Phase {
    let clients: Vec<AccessServiceClient<Channel>> = channels
        .iter()
        .cloned()
        .map(AccessServiceClient::new)
        .collect();
    let expect_granted = !args.expect_denied;
    let check_targets = targets.to_vec();
    let duration = Duration::from_secs(args.duration);
    drive(args.concurrency, duration, move |worker| {
        let mut client = clients[worker % clients.len()].clone();
        let target = &check_targets[worker % check_targets.len()];
        let request = authorized(&target.token, pb::CheckAccessRequest {
            door_id: target.door.clone(),
            user_id: target.user.clone(),
            method: pb::AccessMethod::Card as i32,
            client_ip: "127.0.0.1".into(),
            request_id: String::new(),
            code: String::new(),
        });
        async move {
            matches!(client.check_access(request).await, Ok(r) if r.get_ref().decision.as_ref().is_some_and(|d| d.granted == expect_granted))
        }
    })
    .await
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(
            Endpoint::from_shared(args.target.clone())?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    if args.seed_rules == 0 && args.token.len() > 1 {
        return Err("--seed-rules 0 takes one --token, with --door and --user".into());
    }
    let mut targets = Vec::new();
    for token in &args.token {
        let token: MetadataValue<tonic::metadata::Ascii> = format!("Bearer {token}").parse()?;
        let (door, user) = if args.seed_rules > 0 {
            seed(channels[0].clone(), &token, args.seed_rules).await?
        } else {
            (args.door.clone(), args.user.clone())
        };
        targets.push(Target { token, door, user });
    }
    let duration = Duration::from_secs(args.duration);
    println!(
        "target {}  concurrency {}  duration {}s  connections {}  tenants {}",
        args.target,
        args.concurrency,
        args.duration,
        channels.len(),
        targets.len()
    );

    let churning = Arc::new(AtomicBool::new(true));
    let churn = (args.churn_ms > 0).then(|| {
        tokio::spawn(churn_door(
            channels[0].clone(),
            targets[0].clone(),
            Duration::from_millis(args.churn_ms),
            Arc::clone(&churning),
        ))
    });
    let check_rate = check_access(&args, &channels, &targets)
        .await
        .report("CheckAccess");
    churning.store(false, Ordering::Relaxed);
    if let Some(churn) = churn {
        let (changed, failed) = churn.await.unwrap_or((0, 0));
        println!(
            "churn        {changed} door changes, one every {} ms, {failed} failed",
            args.churn_ms
        );
    }

    if args.streams > 0 {
        let target = targets[0].clone();
        let doors =
            seed_doors(channels[0].clone(), &target.token, args.stream_doors.max(1)).await?;
        let before = args.server_pid.and_then(resident_kib);
        let streams = Streams::open(&args.target, &target.token, &doors, args.streams).await?;
        // Every stream is open once its first read has been answered; let them settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = args.server_pid.and_then(resident_kib);
        if let (Some(before), Some(after)) = (before, after) {
            println!(
                "streams      {} open: resident {before} KiB -> {after} KiB, {:.1} KiB per stream",
                args.streams,
                after.saturating_sub(before) as f64 / args.streams as f64
            );
        }
        streams.measuring.store(true, Ordering::Relaxed);
        let probing = Arc::new(AtomicBool::new(true));
        let prober = tokio::spawn(probe(
            channels[0].clone(),
            target,
            doors,
            args.probe_rate,
            Arc::clone(&probing),
        ));
        let with_streams = check_access(&args, &channels, &targets)
            .await
            .report("CheckAccess+streams");
        probing.store(false, Ordering::Relaxed);
        let probes = prober.await.unwrap_or(0);
        // Events of the last probes are still on their way.
        tokio::time::sleep(Duration::from_millis(500)).await;
        streams.measuring.store(false, Ordering::Relaxed);
        let mut latencies = std::mem::take(
            &mut *streams
                .latencies_us
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for task in &streams.tasks {
            task.abort();
        }
        latencies.sort_unstable();
        let at = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .map_or(0.0, |us| *us as f64 / 1000.0)
        };
        println!(
            "events       {probes} probes, {} deliveries, recorded to consumer p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            latencies.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
        println!(
            "ratio        CheckAccess with {} streams / without = {:.1}%",
            args.streams,
            100.0 * with_streams / check_rate.max(1.0)
        );
    }

    if !args.no_baseline {
        let health: Vec<HealthClient<Channel>> =
            channels.iter().cloned().map(HealthClient::new).collect();
        let mut baseline = drive(args.concurrency, duration, move |worker| {
            let mut client = health[worker % health.len()].clone();
            async move {
                client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .is_ok()
            }
        })
        .await;
        let baseline_rate = baseline.report("health.Check");
        println!(
            "ratio        CheckAccess / health.Check = {:.1}%",
            100.0 * check_rate / baseline_rate.max(1.0)
        );
    }
    Ok(())
}

//! Every RPC of both services under hostile input, driven by the compiled descriptors so
//! that a new RPC is fuzzed without being named here.
//!
//! - Fuzzed requests (NUL and control characters, megabyte strings, mixed scripts,
//!   numbers at their extremes, unknown enum values, timestamps out of range, malformed
//!   page tokens and field masks, lists of random length, valid ids of the seeded world)
//!   from callers of every role: no answer is `INTERNAL` or `UNKNOWN`, no error's
//!   trailers outgrow what clients accept, nothing panics, both servers still serve,
//!   the audit chains still verify, and decisions made beside the fuzzer are all
//!   answered and all in the audit log.
//! - Bodies that are not protobuf (truncated, invalid UTF-8 in a string, an endless
//!   varint) are `INVALID_ARGUMENT`.
//! - NUL in any string field is `INVALID_ARGUMENT` naming that field.
//!
//! `FUZZ_SEED` (default below) fixes every choice the generator makes; the ids the
//! servers generate differ between runs. `FUZZ_REQUESTS` sets how many requests are sent.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fuzz::{
    Failures, Generator, Rng, Sanity, Seeds, TRAILER_LIMIT, UNDECODABLE_ANSWER, call, compact,
    describe, is_internal, latchkey_methods, panics, trailer_size,
};
use common::world::{ANNEX, BIKE_SHED, FRONT_DOOR, ROOM_101, World, settings};
use futures_util::StreamExt;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::access_service_client::AccessServiceClient;
use latchkey::pb::access::v1::audit_service_client::AuditServiceClient;
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::pb::access::v1::rule_service_client::RuleServiceClient;
use latchkey::testkit::{authorized, token};
use prost::Message;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor, Value,
};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

const DEFAULT_SEED: u64 = 0x1a7c_4e5d_2026_1204;
const DEFAULT_REQUESTS: u64 = 10_000;
/// Requests in flight at once.
const CONCURRENCY: usize = 8;
/// Decision loops running beside the fuzzer.
const CHECKERS: usize = 3;
/// How long a server-streaming call is read (a live stream does not end).
const STREAM_WAIT: Duration = Duration::from_millis(150);
/// A call not answered in this long is a failure in itself.
const CALL_LIMIT: Duration = Duration::from_secs(30);
/// The tenant the checkers decide in: the fuzzer's callers are of other tenants, so
/// nothing they do (a purge of the log, a door deleted) may change its answers.
const STEADY: &str = "steady";

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => {
            let value = value.trim();
            let parsed = match value.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => value.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("{name}={value}: {e}"))
        }
        Err(_) => default,
    }
}

/// Who calls: a role (or none of the known ones) in a tenant.
struct Caller {
    label: &'static str,
    token: String,
}

fn callers(gateway: bool) -> Vec<(u64, Caller)> {
    let caller = |label, tenant: &str, user: &str, roles: &[&str]| Caller {
        label,
        token: token(tenant, user, roles),
    };
    if gateway {
        vec![
            (80, caller("SERVICE", "acme", "booking", &["SERVICE"])),
            (5, caller("ADMIN", "acme", "admin", &["ADMIN"])),
            (5, caller("member", "acme", "alice-ext", &["staff"])),
            (
                10,
                caller("SERVICE of another tenant", "other", "svc", &["SERVICE"]),
            ),
        ]
    } else {
        vec![
            (55, caller("ADMIN", "acme", "admin", &["ADMIN"])),
            (15, caller("MANAGER", "acme", "manager", &["MANAGER"])),
            (15, caller("SERVICE", "acme", "booking", &["SERVICE"])),
            (10, caller("member", "acme", "alice-ext", &["staff"])),
            (
                5,
                caller("ADMIN of another tenant", "other", "admin", &["ADMIN"]),
            ),
        ]
    }
}

fn pick_caller<'a>(rng: &mut Rng, callers: &'a [(u64, Caller)]) -> &'a Caller {
    let total: u64 = callers.iter().map(|(weight, _)| weight).sum();
    let mut roll = rng.next_u64() % total;
    for (weight, caller) in callers {
        if roll < *weight {
            return caller;
        }
        roll -= weight;
    }
    &callers[0].1
}

/// A connection for the fuzzer's calls that accepts trailers far larger than clients
/// do by default (16 KiB): an oversized error then reaches the fuzzer, which measures
/// it against [`TRAILER_LIMIT`] and names the request, instead of the client closing
/// the whole connection and failing every call in flight on it.
async fn fuzzing_channel(url: String) -> Channel {
    tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .http2_max_header_list_size(64 << 20)
        .connect()
        .await
        .unwrap()
}

async fn wait_serving(channel: Channel, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut health = HealthClient::new(channel);
    loop {
        let status = health
            .check(HealthCheckRequest::default())
            .await
            .map(|answer| answer.into_inner().status);
        if status
            .as_ref()
            .is_ok_and(|s| *s == ServingStatus::Serving as i32)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never served: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn user(
    directory: &mut DirectoryServiceClient<Channel>,
    admin: &str,
    name: &str,
    external_id: &str,
    roles: &[&str],
    active: bool,
) -> String {
    directory
        .create_user(authorized(
            pb::CreateUserRequest {
                user: Some(pb::User {
                    name: name.into(),
                    external_id: external_id.into(),
                    roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                    active,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

/// The fuzzed tenant, `acme`: World's property and TTLock account, doors on locks and
/// one without, users (one of them the member callers' `sub`), a membership, a rule
/// with a weekly slot and an access code.
async fn seed_acme(w: &World) -> Seeds {
    let mut seeds = Seeds::default();
    let front = w.door("Front door", Some(FRONT_DOOR)).await;
    let room = w.door("Room 101", Some(ROOM_101)).await;
    let pool = w.door("Pool", None).await;
    w.sync_locks().await;
    let mut directory = DirectoryServiceClient::new(w.channel(0).await);
    let alice = user(
        &mut directory,
        &w.admin,
        "Alice",
        "alice-ext",
        &["staff"],
        true,
    )
    .await;
    let bob = user(&mut directory, &w.admin, "Bob", "", &["member"], true).await;
    let carol = user(&mut directory, &w.admin, "Carol", "carol-ext", &[], false).await;
    let now = chrono::Utc::now();
    let membership = directory
        .create_membership(authorized(
            pb::CreateMembershipRequest {
                membership: Some(pb::Membership {
                    user_id: bob.clone(),
                    status: pb::MembershipStatus::Active as i32,
                    start_time: Some(latchkey::pb::timestamp(now - chrono::Duration::days(1))),
                    plan: "monthly".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let rule = RuleServiceClient::new(w.channel(0).await)
        .create_rule(authorized(
            pb::CreateRuleRequest {
                rule: Some(pb::Rule {
                    door_id: front.clone(),
                    name: "Weekdays".into(),
                    user_ids: vec![alice.clone()],
                    roles: vec!["member".into()],
                    time_slots: vec![pb::TimeSlot {
                        day_of_week: 1,
                        start: "08:00".into(),
                        end: "20:00".into(),
                    }],
                    active: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let code = w
        .issue(
            0,
            &[&front],
            "915372846",
            Some((
                now - chrono::Duration::hours(1),
                now + chrono::Duration::days(1),
            )),
            "seed-code",
        )
        .await
        .access_code
        .unwrap()
        .id;
    for door in [front, room, pool] {
        seeds.add("door", door);
    }
    for user in [alice, bob, carol] {
        seeds.add("user", user);
    }
    seeds.add("property", w.property.id.clone());
    seeds.add("membership", membership);
    seeds.add("rule", rule);
    seeds.add("code", code);
    seeds.add("account", w.account.clone());
    seeds.lock_ids = vec![FRONT_DOOR, ROOM_101, ANNEX, BIKE_SHED];
    let fixture = &w.sim.accounts()[0];
    seeds.sim_base_url = w.sim.base_url();
    seeds.sim_client_id = fixture.client_id.clone();
    seeds.sim_client_secret = fixture.client_secret.clone();
    seeds.sim_username = fixture.username.clone();
    seeds.sim_password = fixture.password.clone();
    seeds
}

/// The checkers' tenant: a door and a user granted it at any time. Returns the door,
/// the user and an admin token.
async fn seed_steady(w: &World, seeds: &mut Seeds) -> (String, String, String) {
    let admin = token(STEADY, "admin", &["ADMIN"]);
    let mut directory = DirectoryServiceClient::new(w.channel(0).await);
    let property = directory
        .create_property(authorized(
            pb::CreatePropertyRequest {
                property: Some(pb::Property {
                    name: "Steady".into(),
                    time_zone: "UTC".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let door = directory
        .create_door(authorized(
            pb::CreateDoorRequest {
                door: Some(pb::Door {
                    property_id: property.clone(),
                    name: "Office".into(),
                    r#type: pb::DoorType::Room as i32,
                    active: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let user = user(&mut directory, &admin, "Dora", "", &["staff"], true).await;
    RuleServiceClient::new(w.channel(0).await)
        .create_rule(authorized(
            pb::CreateRuleRequest {
                rule: Some(pb::Rule {
                    door_id: door.clone(),
                    name: "Always".into(),
                    user_ids: vec![user.clone()],
                    active: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();
    // Another tenant's ids, for the fuzzer to try across the boundary.
    seeds.add("property", property);
    seeds.add("door", door.clone());
    seeds.add("user", user.clone());
    (door, user, admin)
}

/// A decision answered beside the fuzzer: request id, audit sequence, granted.
type Check = (String, i64, bool);

fn spawn_checkers(
    channel: Channel,
    door: String,
    user: String,
    admin: String,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(Vec<Check>, Vec<String>)>> {
    (0..CHECKERS)
        .map(|checker| {
            let mut access = AccessServiceClient::new(channel.clone());
            let (door, user, admin, stop) =
                (door.clone(), user.clone(), admin.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut checks, mut failures) = (Vec::new(), Vec::new());
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let request_id = format!("steady-{checker}-{n}");
                    let request = pb::CheckAccessRequest {
                        door_id: door.clone(),
                        user_id: user.clone(),
                        method: pb::AccessMethod::Card as i32,
                        request_id: request_id.clone(),
                        ..Default::default()
                    };
                    match access.check_access(authorized(request, &admin)).await {
                        Ok(answer) => {
                            let answer = answer.into_inner();
                            match answer.decision {
                                Some(decision) => checks.push((
                                    request_id,
                                    answer.audit_sequence,
                                    decision.granted,
                                )),
                                None => {
                                    failures.push(format!("{request_id}: OK without a decision"))
                                }
                            }
                        }
                        Err(status) => {
                            failures.push(format!("{request_id}: {}", describe(&status)))
                        }
                    }
                }
                (checks, failures)
            })
        })
        .collect()
}

/// One generated request: where it goes, as whom, its body, and how to show it.
struct Fuzzed {
    method: MethodDescriptor,
    gateway: bool,
    token: String,
    body: Vec<u8>,
    shown: String,
}

/// The `i`th request: the methods in turn, a caller drawn by weight, and a message of
/// the method's input type at a sanity drawn per request.
fn generate(
    i: u64,
    rng: &mut Rng,
    methods: &[MethodDescriptor],
    seeds: &Seeds,
    access_callers: &[(u64, Caller)],
    gateway_callers: &[(u64, Caller)],
) -> Fuzzed {
    let method = methods[(i % methods.len() as u64) as usize].clone();
    let gateway = method.full_name().starts_with("latchkey.gateway.");
    let caller = pick_caller(
        rng,
        if gateway {
            gateway_callers
        } else {
            access_callers
        },
    );
    let sanity = Sanity(*rng.pick(&[95, 80, 50, 10]));
    let message = Generator {
        rng: &mut *rng,
        seeds,
        sanity,
        big: 1,
    }
    .message(&method.input(), 0);
    let mut body = message.encode_to_vec();
    let unknown_field = rng.percent(5);
    if unknown_field {
        // Field 999, a varint: unknown fields are skipped, never an error.
        body.extend_from_slice(&[0xb8, 0x3e, 0x01]);
    }
    let shown = format!(
        "as {}: {}{}",
        caller.label,
        compact(&message),
        if unknown_field {
            " + unknown field 999"
        } else {
            ""
        }
    );
    Fuzzed {
        method,
        gateway,
        token: caller.token.clone(),
        body,
        shown,
    }
}

/// Sends one request and checks its answer; returns the code it got, for the tally.
async fn send(
    fuzzed: Fuzzed,
    channel: Channel,
    seeds: Arc<Mutex<Seeds>>,
    failures: Arc<Failures>,
) -> String {
    let Fuzzed {
        method,
        token,
        body,
        shown,
        ..
    } = fuzzed;
    let name = method.full_name();
    let answer = tokio::time::timeout(
        CALL_LIMIT,
        call(&channel, &method, body, &token, STREAM_WAIT),
    )
    .await;
    match answer {
        Err(_) => {
            failures.add(name, "no answer within 30 s", None, String::new(), shown);
            "no answer".to_owned()
        }
        Ok(Ok(answers)) => {
            let mut seeds = seeds.lock().unwrap();
            for answer in &answers {
                seeds.harvest(answer);
            }
            "Ok".to_owned()
        }
        Ok(Err(status)) => {
            if status.message().starts_with(UNDECODABLE_ANSWER) {
                let kind = "answer does not decode";
                failures.add(name, kind, None, describe(&status), shown.clone());
            } else if is_internal(status.code()) {
                let kind = "INTERNAL or UNKNOWN";
                failures.add(name, kind, None, describe(&status), shown.clone());
            }
            let size = trailer_size(&status);
            if size >= TRAILER_LIMIT {
                let status = format!("{size} bytes: {}", describe(&status));
                failures.add(name, "trailers over 8 KiB", Some(""), status, shown);
            }
            format!("{:?}", status.code())
        }
    }
}

/// What is wrong with the decisions made beside the fuzzer: any failed, any denied, any
/// answered but missing from the audit log under its sequence.
async fn check_problems(w: &World, checks: &[Check], failures: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if checks.is_empty() {
        problems.push("no decision was answered beside the fuzzer".to_owned());
    }
    if !failures.is_empty() {
        problems.push(format!(
            "{} decisions beside the fuzzer failed:\n{}",
            failures.len(),
            failures[..failures.len().min(20)].join("\n")
        ));
    }
    let denied: Vec<&Check> = checks.iter().filter(|(_, _, granted)| !granted).collect();
    if !denied.is_empty() {
        problems.push(format!(
            "{} decisions beside the fuzzer were denied: {:?}",
            denied.len(),
            &denied[..denied.len().min(10)]
        ));
    }
    let sequences: Vec<i64> = checks.iter().map(|(_, sequence, _)| *sequence).collect();
    let logged: std::collections::HashMap<i64, String> =
        w.db.client()
            .await
            .query(
                "SELECT sequence, request_id FROM access.audit_log \
             WHERE tenant_id = $1 AND sequence = ANY($2)",
                &[&STEADY, &sequences],
            )
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
    let unlogged: Vec<&Check> = checks
        .iter()
        .filter(|(request_id, sequence, _)| logged.get(sequence) != Some(request_id))
        .collect();
    if !unlogged.is_empty() {
        problems.push(format!(
            "{} answered decisions are not in the audit log: {:?}",
            unlogged.len(),
            &unlogged[..unlogged.len().min(10)]
        ));
    }
    problems
}

/// What is wrong with the servers after fuzzing: not serving, or an audit chain that no
/// longer verifies.
async fn server_problems(
    access: &Channel,
    gateway: &Channel,
    chains: &[(&str, String)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, channel) in [("access-service", access), ("lock-gateway", gateway)] {
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest::default())
            .await
            .map(|answer| answer.into_inner().status);
        if !status
            .as_ref()
            .is_ok_and(|s| *s == ServingStatus::Serving as i32)
        {
            problems.push(format!("{name} health after fuzzing: {status:?}"));
        }
    }
    for (tenant, admin) in chains {
        let verified = AuditServiceClient::new(access.clone())
            .verify_audit_chain(authorized(pb::VerifyAuditChainRequest::default(), admin))
            .await;
        match verified {
            Ok(answer) if answer.get_ref().valid => {}
            other => problems.push(format!("{tenant}'s audit chain after fuzzing: {other:?}")),
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_requests_to_every_rpc_never_fail_internally() {
    let panics = panics();
    let panics_before = panics.lock().unwrap().len();
    let seed = env_u64("FUZZ_SEED", DEFAULT_SEED);
    let requests = env_u64("FUZZ_REQUESTS", DEFAULT_REQUESTS);
    let methods = latchkey_methods();
    for package in ["latchkey.access.v1.", "latchkey.gateway.v1."] {
        assert!(
            methods.iter().any(|m| m.full_name().starts_with(package)),
            "no {package} method in the descriptor set"
        );
    }

    let w = World::new(1, settings()).await;
    let mut seeds = seed_acme(&w).await;
    let (door, user, steady_admin) = seed_steady(&w, &mut seeds).await;
    let access = fuzzing_channel(w.access[0].url()).await;
    let gateway = fuzzing_channel(w.gateway.url()).await;
    wait_serving(access.clone(), "access-service").await;
    wait_serving(gateway.clone(), "lock-gateway").await;
    let (access_callers, gateway_callers) = (callers(false), callers(true));

    let stop = Arc::new(AtomicBool::new(false));
    // The checkers are another client, on a connection of their own.
    let checker_channel = w.channel(0).await;
    let checkers = spawn_checkers(
        checker_channel,
        door,
        user,
        steady_admin.clone(),
        stop.clone(),
    );

    eprintln!(
        "fuzz: FUZZ_SEED={seed:#x} FUZZ_REQUESTS={requests}, {} methods, {CONCURRENCY} in flight",
        methods.len()
    );
    let started = Instant::now();
    let seeds = Arc::new(Mutex::new(seeds));
    let failures = Arc::new(Failures::default());
    let mut rng = Rng::new(seed);
    let codes: Vec<(String, String)> = futures_util::stream::iter(0..requests)
        .map(|i| {
            let fuzzed = generate(
                i,
                &mut rng,
                &methods,
                &seeds.lock().unwrap(),
                &access_callers,
                &gateway_callers,
            );
            let channel = if fuzzed.gateway { &gateway } else { &access }.clone();
            let name = fuzzed.method.full_name().to_owned();
            let sent = send(fuzzed, channel, seeds.clone(), failures.clone());
            async move { (name, sent.await) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let fuzzing = started.elapsed();

    stop.store(true, Ordering::SeqCst);
    let (mut checks, mut check_failures) = (Vec::new(), Vec::new());
    for checker in checkers {
        let (answered, failed) = checker.await.unwrap();
        checks.extend(answered);
        check_failures.extend(failed);
    }

    let mut by_method: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for (method, code) in &codes {
        *by_method
            .entry(method)
            .or_default()
            .entry(code)
            .or_default() += 1;
        *totals.entry(code).or_default() += 1;
    }
    for (method, counts) in &by_method {
        eprintln!("  {method}: {counts:?}");
    }
    eprintln!(
        "fuzz: {requests} requests in {:.1} s ({totals:?}); {} decisions beside them",
        fuzzing.as_secs_f64(),
        checks.len()
    );

    let mut problems = Vec::new();
    if failures.count() > 0 {
        problems.push(format!(
            "{} of {requests} requests failed (FUZZ_SEED={seed:#x}):\n{}",
            failures.count(),
            failures.report().join("\n")
        ));
    }
    let never: Vec<&str> = methods
        .iter()
        .map(|m| m.full_name())
        .filter(|name| !by_method.contains_key(name))
        .collect();
    if !never.is_empty() {
        problems.push(format!("methods never called: {never:?}"));
    }
    problems.extend(check_problems(&w, &checks, &check_failures).await);
    let chains = [("acme", w.admin.clone()), (STEADY, steady_admin)];
    problems.extend(server_problems(&access, &gateway, &chains).await);
    let panicked: Vec<String> = panics.lock().unwrap()[panics_before..].to_vec();
    if !panicked.is_empty() {
        problems.push(format!(
            "{} panics while fuzzing (or in this binary's other tests, which run alongside):\n{}",
            panicked.len(),
            panicked.join("\n")
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Stops both services and waits for them, so that the test's runtime is not torn down
/// under them while another test of this binary still counts panics.
async fn stop(pair: common::Pair) {
    let (access, gateway) = (pair.access.stop().await, pair.gateway.stop().await);
    assert!(access.is_ok() && gateway.is_ok(), "{access:?} {gateway:?}");
}

/// The privileged caller of each service, so that a request reaches its handler.
fn privileged(method: &MethodDescriptor) -> String {
    if method.full_name().starts_with("latchkey.gateway.") {
        token("acme", "booking", &["SERVICE"])
    } else {
        token("acme", "admin", &["ADMIN"])
    }
}

fn tag(field: u32, wire_type: u8) -> Vec<u8> {
    let mut key = u64::from(field) << 3 | u64::from(wire_type);
    let mut out = Vec::new();
    loop {
        let byte = (key & 0x7f) as u8;
        key >>= 7;
        if key == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A length-delimited field holding `content` (shorter than 128 bytes).
fn delimited(field: u32, content: &[u8]) -> Vec<u8> {
    let mut out = tag(field, 2);
    out.push(u8::try_from(content.len()).unwrap());
    out.extend_from_slice(content);
    out
}

/// The string fields of `message` and of the messages in it, to `depth` levels, as
/// paths of field descriptors.
fn string_fields(message: &MessageDescriptor, depth: u32) -> Vec<Vec<FieldDescriptor>> {
    let mut found = Vec::new();
    for field in message.fields() {
        match field.kind() {
            Kind::String => found.push(vec![field]),
            Kind::Message(inner)
                if depth > 1 && !inner.full_name().starts_with("google.protobuf.") =>
            {
                for mut path in string_fields(&inner, depth - 1) {
                    path.insert(0, field.clone());
                    found.push(path);
                }
            }
            _ => {}
        }
    }
    found
}

/// The first string field of the request (at most one message deep), encoded with
/// invalid UTF-8 in it.
fn invalid_utf8(message: &MessageDescriptor) -> Option<(String, Vec<u8>)> {
    let path = string_fields(message, 2).into_iter().next()?;
    let invalid: &[u8] = &[0xc3, 0x28, 0xff, 0xfe];
    let mut body = delimited(path[path.len() - 1].number(), invalid);
    for field in path.iter().rev().skip(1) {
        body = delimited(field.number(), &body);
    }
    let name = path.iter().map(|f| f.name()).collect::<Vec<_>>().join(".");
    Some((name, body))
}

/// A valid encoding of a plausible request, cut short by one byte: whatever field comes
/// last is left incomplete.
fn truncated(message: &MessageDescriptor, rng: &mut Rng) -> Vec<u8> {
    // Nothing listens there: not even a decoded request may reach TTLock's cloud.
    let seeds = Seeds {
        sim_base_url: "http://127.0.0.1:9".to_owned(),
        ..Seeds::default()
    };
    let body = Generator {
        rng,
        seeds: &seeds,
        sanity: Sanity(100),
        big: 0,
    }
    .message(message, 0)
    .encode_to_vec();
    if body.is_empty() {
        // Field 1, said to hold five bytes, holding one.
        vec![0x0a, 0x05, b'a']
    } else {
        body[..body.len() - 1].to_vec()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_bodies_are_invalid_arguments() {
    let pair = common::start().await;
    let (access, gateway) = (pair.access.channel().await, pair.gateway.channel().await);
    let mut rng = Rng::new(env_u64("FUZZ_SEED", DEFAULT_SEED));
    let failures = Failures::default();
    let (mut sent, mut without_strings) = (0, Vec::new());
    for method in latchkey_methods() {
        let channel = if method.full_name().starts_with("latchkey.gateway.") {
            &gateway
        } else {
            &access
        };
        let token = privileged(&method);
        let input = method.input();
        let mut bodies = vec![
            ("truncated", truncated(&input, &mut rng)),
            // Field 1 as a varint that never ends.
            (
                "endless varint",
                [&[0x08][..], &[0xff; 10], &[0x01]].concat(),
            ),
        ];
        match invalid_utf8(&input) {
            Some((field, body)) => bodies.push((
                if field.contains('.') {
                    "invalid UTF-8 in a nested string"
                } else {
                    "invalid UTF-8 in a string"
                },
                body,
            )),
            None => without_strings.push(method.name().to_owned()),
        }
        for (kind, body) in bodies {
            sent += 1;
            let shown = format!("{body:02x?}");
            let answer = tokio::time::timeout(
                CALL_LIMIT,
                call(channel, &method, body, &token, STREAM_WAIT),
            )
            .await;
            match answer {
                Ok(Err(status)) if status.code() == Code::InvalidArgument => {}
                Ok(Err(status)) => {
                    failures.add(method.full_name(), kind, None, describe(&status), shown)
                }
                Ok(Ok(_)) => failures.add(method.full_name(), kind, None, "OK".to_owned(), shown),
                Err(_) => failures.add(
                    method.full_name(),
                    kind,
                    None,
                    "no answer".to_owned(),
                    shown,
                ),
            }
        }
    }
    eprintln!("undecodable bodies: {sent} sent; no string field to spoil in {without_strings:?}");
    stop(pair).await;
    assert!(
        failures.count() == 0,
        "{} of {sent} undecodable bodies were not INVALID_ARGUMENT:\n{}",
        failures.count(),
        failures.report().join("\n")
    );
}

/// `message` with only the field at `path` set (and the messages holding it): a NUL in
/// it, in a list's only element for a repeated field.
fn with_nul(message: &MessageDescriptor, path: &[FieldDescriptor]) -> DynamicMessage {
    let mut out = DynamicMessage::new(message.clone());
    let (field, rest) = path.split_first().expect("a field");
    let value = if rest.is_empty() {
        let text = if field.name() == "base_url" {
            "http://127.0.0.1:9/\0".to_owned()
        } else {
            "bad\0value".to_owned()
        };
        Value::String(text)
    } else {
        let Kind::Message(inner) = field.kind() else {
            unreachable!("paths go through messages")
        };
        Value::Message(with_nul(&inner, rest))
    };
    let value = if field.is_list() {
        Value::List(vec![value])
    } else {
        value
    };
    out.set_field(field, value);
    // An absent base URL means TTLock's real cloud: name one that goes nowhere.
    if let Some(base_url) = message.get_field_by_name("base_url")
        && !out.has_field(&base_url)
    {
        out.set_field(&base_url, Value::String("http://127.0.0.1:9".to_owned()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_any_string_field_is_an_invalid_argument_naming_it() {
    let pair = common::start().await;
    let (access, gateway) = (pair.access.channel().await, pair.gateway.channel().await);
    let failures = Failures::default();
    let mut sent = 0;
    for method in latchkey_methods() {
        let channel = if method.full_name().starts_with("latchkey.gateway.") {
            &gateway
        } else {
            &access
        };
        let token = privileged(&method);
        for path in string_fields(&method.input(), 2) {
            sent += 1;
            let field = path.iter().map(|f| f.name()).collect::<Vec<_>>().join(".");
            let message = with_nul(&method.input(), &path);
            let shown = compact(&message);
            let answer = tokio::time::timeout(
                CALL_LIMIT,
                call(
                    channel,
                    &method,
                    message.encode_to_vec(),
                    &token,
                    STREAM_WAIT,
                ),
            )
            .await;
            let kind = format!("NUL in {field}");
            match answer {
                Ok(Err(status)) if status.code() == Code::InvalidArgument => {
                    let leaf = path[path.len() - 1].name();
                    let named = status.get_error_details().bad_request().is_some_and(|bad| {
                        bad.field_violations.iter().any(|v| v.field.contains(leaf))
                    });
                    if !named {
                        failures.add(method.full_name(), &kind, None, describe(&status), shown);
                    }
                }
                Ok(Err(status)) => {
                    failures.add(method.full_name(), &kind, None, describe(&status), shown)
                }
                Ok(Ok(_)) => failures.add(method.full_name(), &kind, None, "OK".to_owned(), shown),
                Err(_) => failures.add(
                    method.full_name(),
                    &kind,
                    None,
                    "no answer".to_owned(),
                    shown,
                ),
            }
        }
    }
    eprintln!("NUL strings: {sent} requests");
    stop(pair).await;
    assert!(
        failures.count() == 0,
        "{} of {sent} requests with a NUL were not INVALID_ARGUMENT naming the field:\n{}",
        failures.count(),
        failures.report().join("\n")
    );
}

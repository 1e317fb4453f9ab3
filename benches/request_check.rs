//! What checking a request against its descriptor costs on the decision path: a
//! CheckAccess as an internal service sends it, and a rule with 50 users and 28 slots.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use latchkey::pb::access::v1 as pb;
use latchkey::request_check::{check_body, input_of};
use prost::Message;

fn frame(message: &impl Message) -> Vec<u8> {
    let encoded = message.encode_to_vec();
    let mut body = vec![0];
    body.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    body.extend_from_slice(&encoded);
    body
}

fn check(c: &mut Criterion) {
    let input = input_of("/latchkey.access.v1.AccessService/CheckAccess").unwrap();
    let body = frame(&pb::CheckAccessRequest {
        door_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        user_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c".into(),
        method: pb::AccessMethod::Card as i32,
        client_ip: "10.20.30.40".into(),
        request_id: "door-controller-7-000123".into(),
        code: String::new(),
    });
    c.bench_function("check CheckAccessRequest", |b| {
        b.iter(|| check_body(&input, black_box(&body)).unwrap());
    });

    let input = input_of("/latchkey.access.v1.RuleService/CreateRule").unwrap();
    let body = frame(&pb::CreateRuleRequest {
        rule: Some(pb::Rule {
            door_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            name: "Cleaners, weekday mornings".into(),
            user_ids: (0..50).map(|i| format!("user-{i:04}")).collect(),
            time_slots: (0..28)
                .map(|i| pb::TimeSlot {
                    day_of_week: i % 7,
                    start: "06:00".into(),
                    end: "09:30".into(),
                })
                .collect(),
            ..Default::default()
        }),
        request_id: "r-1".into(),
    });
    c.bench_function("check CreateRuleRequest (50 users, 28 slots)", |b| {
        b.iter(|| check_body(&input, black_box(&body)).unwrap());
    });
}

criterion_group!(benches, check);
criterion_main!(benches);

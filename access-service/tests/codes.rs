//! Access codes end to end over a real socket on a fresh database: property settings,
//! issuing (chosen, generated, replayed, refused), stay codes in the property's time
//! zone, revocation and the provisioning rows each change writes, lists, CheckAccess
//! with PIN and PASSCODE judged by an injected clock, EmergencyUnlock, tenant
//! isolation, and no plaintext code anywhere in the database.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use latchkey::clock::ManualClock;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::access_code_service_client::AccessCodeServiceClient;
use latchkey::pb::access::v1::access_service_client::AccessServiceClient;
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::pb::{from_timestamp, timestamp};
use latchkey::testkit::{RunningServer, TestDb, authorized, token};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Monday 2027-03-01 10:00 UTC: where the service's clock starts.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 3, 1, 10, 0, 0).unwrap()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

struct World {
    db: TestDb,
    _server: RunningServer<access_service::RunError>,
    clock: ManualClock,
    tenant: String,
    admin: String,
    directory: DirectoryServiceClient<Channel>,
    codes: AccessCodeServiceClient<Channel>,
    access: AccessServiceClient<Channel>,
    property: pb::Property,
    requests: u32,
}

impl World {
    async fn new(tenant: &str) -> Self {
        let db = common::database().await;
        let clock = ManualClock::new(t0().timestamp_millis());
        let mut config = common::config(db.url());
        config.clock = Some(Arc::new(clock.clone()));
        let server = common::start(config).await;
        let channel = server.channel().await;
        let admin = token(tenant, "admin", &["ADMIN"]);
        let mut directory = DirectoryServiceClient::new(channel.clone());
        let property = common::property(&mut directory, &admin, "Casa Sol", "Europe/Madrid").await;
        Self {
            db,
            _server: server,
            clock,
            tenant: tenant.to_owned(),
            admin,
            directory,
            codes: AccessCodeServiceClient::new(channel.clone()),
            access: AccessServiceClient::new(channel),
            property,
            requests: 0,
        }
    }

    fn at(&self, at: DateTime<Utc>) {
        self.clock.set(at.timestamp_millis());
    }

    fn request_id(&mut self) -> String {
        self.requests += 1;
        format!("req-{}", self.requests)
    }

    /// A property with the given code settings.
    async fn property_with(&mut self, name: &str, settings: pb::CodeSettings) -> pb::Property {
        self.directory
            .create_property(authorized(
                pb::CreatePropertyRequest {
                    property: Some(pb::Property {
                        name: name.into(),
                        time_zone: "Europe/Madrid".into(),
                        code_settings: Some(settings),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &self.admin,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// An active unit of `property`, bound to TTLock lock `lock` when given.
    async fn door_of(&mut self, property: &str, name: &str, lock: Option<i64>) -> String {
        let spec = pb::Door {
            r#type: pb::DoorType::Unit as i32,
            lock: lock.map(|lock_id| pb::LockBinding {
                account_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
                lock_id,
            }),
            ..common::door_spec(property, name)
        };
        common::door(&mut self.directory, &self.admin, spec)
            .await
            .id
    }

    async fn door(&mut self, name: &str, lock: Option<i64>) -> String {
        let property = self.property.id.clone();
        self.door_of(&property, name, lock).await
    }

    async fn issue(
        &mut self,
        request: pb::IssueAccessCodeRequest,
    ) -> Result<pb::IssueAccessCodeResponse, Status> {
        let admin = self.admin.clone();
        self.issue_as(request, &admin).await
    }

    async fn issue_as(
        &mut self,
        request: pb::IssueAccessCodeRequest,
        token: &str,
    ) -> Result<pb::IssueAccessCodeResponse, Status> {
        self.codes
            .issue_access_code(authorized(request, token))
            .await
            .map(tonic::Response::into_inner)
    }

    /// A guest's TEMPORARY code on `doors` from `start` to `end`.
    fn guest_code(
        &mut self,
        doors: &[&str],
        code: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> pb::IssueAccessCodeRequest {
        pb::IssueAccessCodeRequest {
            door_ids: doors.iter().map(|d| (*d).to_owned()).collect(),
            grantee: Some(guest("Ana")),
            purpose: pb::CodePurpose::Stay as i32,
            r#type: pb::CodeType::Temporary as i32,
            start_time: Some(timestamp(start)),
            end_time: Some(timestamp(end)),
            code: code.into(),
            request_id: self.request_id(),
            ..Default::default()
        }
    }

    /// A PERMANENT code on `doors` for a provider.
    fn permanent(&mut self, doors: &[&str], code: &str) -> pb::IssueAccessCodeRequest {
        pb::IssueAccessCodeRequest {
            door_ids: doors.iter().map(|d| (*d).to_owned()).collect(),
            grantee: Some(pb::Grantee {
                r#type: pb::GranteeType::Provider as i32,
                name: "Fixit".into(),
                ..Default::default()
            }),
            purpose: pb::CodePurpose::Maintenance as i32,
            r#type: pb::CodeType::Permanent as i32,
            code: code.into(),
            request_id: self.request_id(),
            ..Default::default()
        }
    }

    async fn stay(
        &mut self,
        booking: &str,
        property: &str,
        arrival: (i32, i32, i32),
        departure: (i32, i32, i32),
    ) -> Result<pb::IssueStayCodesResponse, Status> {
        let request = pb::IssueStayCodesRequest {
            booking_reference: booking.into(),
            property_id: property.into(),
            guest: Some(pb::Guest {
                name: "Ana Sol".into(),
                contact: "ana@example.com".into(),
            }),
            arrival_date: Some(date(arrival)),
            departure_date: Some(date(departure)),
            code: String::new(),
            request_id: self.request_id(),
        };
        self.codes
            .issue_stay_codes(authorized(request, &self.admin))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn revoke(&mut self, id: &str, reason: &str) -> Result<pb::AccessCode, Status> {
        let request = pb::RevokeAccessCodeRequest {
            id: id.into(),
            reason: reason.into(),
            request_id: self.request_id(),
        };
        self.codes
            .revoke_access_code(authorized(request, &self.admin))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn get(&mut self, id: &str) -> pb::AccessCode {
        self.codes
            .get_access_code(authorized(
                pb::GetAccessCodeRequest { id: id.into() },
                &self.admin,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    async fn list(
        &mut self,
        request: pb::ListAccessCodesRequest,
    ) -> Result<pb::ListAccessCodesResponse, Status> {
        self.codes
            .list_access_codes(authorized(request, &self.admin))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn check_with(
        &mut self,
        door: &str,
        method: pb::AccessMethod,
        code: &str,
    ) -> Result<pb::CheckAccessResponse, Status> {
        let request = pb::CheckAccessRequest {
            door_id: door.into(),
            method: method as i32,
            code: code.into(),
            client_ip: "203.0.113.7".into(),
            ..Default::default()
        };
        self.access
            .check_access(authorized(request, &self.admin))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn pin(&mut self, door: &str, code: &str) -> pb::Decision {
        self.check_with(door, pb::AccessMethod::Pin, code)
            .await
            .unwrap()
            .decision
            .unwrap()
    }

    async fn sql(
        &self,
        query: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<tokio_postgres::Row> {
        self.db.client().await.query(query, params).await.unwrap()
    }

    /// The code's outbox rows: (door, intent, due epoch seconds, open, sealed code).
    async fn outbox(&self, code_id: &str) -> Vec<(String, String, i64, bool, Option<Vec<u8>>)> {
        self.sql(
            "SELECT door_id::text, intent, extract(epoch FROM due_time)::bigint, done_time IS NULL, code_sealed \
             FROM access.provisioning_outbox WHERE code_id = $1::text::uuid ORDER BY create_time, id",
            &[&code_id],
        )
        .await
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
    }

    /// Marks the code as written to the door's lock, as provisioning would.
    async fn mark_set(&self, code_id: &str, door_id: &str) {
        self.sql(
            "UPDATE access.access_code_doors SET sync_state = 'SET', lock_passcode_id = 77 \
             WHERE code_id = $1::text::uuid AND door_id = $2::text::uuid",
            &[&code_id, &door_id],
        )
        .await;
        self.sql(
            "UPDATE access.provisioning_outbox SET done_time = now(), code_sealed = NULL \
             WHERE code_id = $1::text::uuid AND door_id = $2::text::uuid AND done_time IS NULL",
            &[&code_id, &door_id],
        )
        .await;
    }
}

async fn ids(w: &mut World, request: pb::ListAccessCodesRequest) -> Vec<String> {
    w.list(request)
        .await
        .unwrap()
        .access_codes
        .into_iter()
        .map(|c| c.id)
        .collect()
}

fn date((year, month, day): (i32, i32, i32)) -> pb::Date {
    pb::Date { year, month, day }
}

fn guest(name: &str) -> pb::Grantee {
    pb::Grantee {
        r#type: pb::GranteeType::Guest as i32,
        name: name.into(),
        ..Default::default()
    }
}

fn instant(ts: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    from_timestamp(ts.unwrap()).unwrap()
}

fn reason(decision: &pb::Decision) -> pb::ReasonCode {
    pb::ReasonCode::try_from(decision.reason_code).unwrap()
}

fn sync(code: &pb::AccessCode, door: &str) -> pb::SyncState {
    let row = code.doors.iter().find(|d| d.door_id == door).unwrap();
    pb::SyncState::try_from(row.sync_state).unwrap()
}

/// The lock's rule: one digit repeated, or a run up or down by one.
fn trivial(code: &str) -> bool {
    let d: Vec<i32> = code.bytes().map(|b| i32::from(b - b'0')).collect();
    let steps: HashSet<i32> = d.windows(2).map(|w| w[1] - w[0]).collect();
    steps.len() == 1 && steps.iter().all(|s| s.abs() <= 1)
}

fn assert_invalid(result: Result<impl std::fmt::Debug, Status>, expected: &[&str]) {
    let status = result.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(common::fields(&status), expected, "{status:?}");
}

fn assert_reason(result: Result<impl std::fmt::Debug, Status>, code: Code, reason: &str) -> Status {
    let status = result.unwrap_err();
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(common::reason(&status), reason, "{status:?}");
    status
}

#[tokio::test]
async fn property_code_settings_have_defaults_round_trip_and_are_validated() {
    let mut w = World::new("tenant-a").await;
    let defaults = w.property.code_settings.clone().unwrap();
    assert_eq!(
        defaults,
        pb::CodeSettings {
            auto_generate: true,
            max_active_codes: 0,
            default_code_length: 6,
            check_in_time: "15:00".into(),
            check_out_time: "11:00".into(),
            cleaning_code: false,
            cleaning_minutes: 180,
        }
    );
    let chosen = pb::CodeSettings {
        auto_generate: false,
        max_active_codes: 10,
        default_code_length: 8,
        check_in_time: "16:30".into(),
        check_out_time: "10:00".into(),
        cleaning_code: true,
        cleaning_minutes: 90,
    };
    let created = w.property_with("Villa", chosen.clone()).await;
    assert_eq!(created.code_settings.as_ref(), Some(&chosen));
    // Zeros and empty times take their defaults.
    let zeros = w
        .property_with(
            "Zeros",
            pb::CodeSettings {
                auto_generate: true,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(zeros.code_settings, Some(defaults.clone()));

    let got = w
        .directory
        .get_property(authorized(
            pb::GetPropertyRequest {
                id: created.id.clone(),
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.code_settings.as_ref(), Some(&chosen));
    let listed = w
        .directory
        .list_properties(authorized(pb::ListPropertiesRequest::default(), &w.admin))
        .await
        .unwrap()
        .into_inner();
    let villa = listed
        .properties
        .iter()
        .find(|p| p.id == created.id)
        .unwrap();
    assert_eq!(villa.code_settings.as_ref(), Some(&chosen));

    // Updated as a whole through its mask path; other fields stay.
    let changed = pb::CodeSettings {
        default_code_length: 5,
        ..chosen.clone()
    };
    let update = |settings: Option<pb::CodeSettings>, paths: &[&str]| pb::UpdatePropertyRequest {
        property: Some(pb::Property {
            id: created.id.clone(),
            name: "ignored".into(),
            code_settings: settings,
            ..Default::default()
        }),
        update_mask: common::mask(paths),
        request_id: String::new(),
    };
    let updated = w
        .directory
        .update_property(authorized(
            update(Some(changed.clone()), &["code_settings"]),
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.code_settings, Some(changed));
    assert_eq!(updated.name, "Villa");
    assert_eq!(updated.version, created.version + 1);
    // Named but absent: back to the defaults.
    let reset = w
        .directory
        .update_property(authorized(update(None, &["code_settings"]), &w.admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reset.code_settings, Some(defaults));

    let bad = pb::CodeSettings {
        auto_generate: true,
        max_active_codes: -1,
        default_code_length: 3,
        check_in_time: "25:00".into(),
        check_out_time: "9:00".into(),
        cleaning_code: true,
        cleaning_minutes: 1441,
    };
    let expected = [
        "property.code_settings.max_active_codes",
        "property.code_settings.default_code_length",
        "property.code_settings.check_in_time",
        "property.code_settings.check_out_time",
        "property.code_settings.cleaning_minutes",
    ];
    let create = w
        .directory
        .create_property(authorized(
            pb::CreatePropertyRequest {
                property: Some(pb::Property {
                    name: "Bad".into(),
                    time_zone: "Europe/Madrid".into(),
                    code_settings: Some(bad.clone()),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &w.admin,
        ))
        .await;
    assert_invalid(create, &expected);
    let update = w
        .directory
        .update_property(authorized(update(Some(bad), &["code_settings"]), &w.admin))
        .await;
    assert_invalid(update, &expected);
    let length_ten = pb::CodeSettings {
        auto_generate: true,
        default_code_length: 10,
        ..Default::default()
    };
    let update10 = w
        .directory
        .update_property(authorized(
            pb::UpdatePropertyRequest {
                property: Some(pb::Property {
                    id: created.id.clone(),
                    code_settings: Some(length_ten),
                    ..Default::default()
                }),
                update_mask: common::mask(&["code_settings"]),
                request_id: String::new(),
            },
            &w.admin,
        ))
        .await;
    assert_invalid(update10, &["property.code_settings.default_code_length"]);
}

#[tokio::test]
async fn an_issued_code_is_shown_once_replays_without_it_and_is_queued_for_its_locks() {
    let mut w = World::new("tenant-a").await;
    let locked = w.door("Front", Some(1001)).await;
    let plain = w.door("Garden", None).await;
    let start = t0() + Duration::days(5);
    let end = t0() + Duration::days(8);
    let request = w.guest_code(&[&locked, &plain], "482913", start, end);
    let first = w.issue(request.clone()).await.unwrap();
    assert_eq!(first.code, "482913");
    assert!(!first.replayed);
    let code = first.access_code.unwrap();
    assert_eq!(code.masked_code, "****13");
    assert_eq!(
        pb::CodeStatus::try_from(code.status).unwrap(),
        pb::CodeStatus::Active
    );
    assert_eq!(code.version, 1);
    assert_eq!(code.property_id, w.property.id);
    assert_eq!(instant(code.start_time.as_ref()), start);
    assert_eq!(instant(code.end_time.as_ref()), end);
    assert_eq!(code.doors.len(), 2);
    assert_eq!(sync(&code, &locked), pb::SyncState::Pending);
    assert_eq!(sync(&code, &plain), pb::SyncState::NotApplicable);

    // One SET intent, for the door with a lock, due the lead time before the window.
    let rows = w.outbox(&code.id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (door, intent, due, open, sealed) = &rows[0];
    assert_eq!(
        (door.as_str(), intent.as_str(), *open),
        (locked.as_str(), "SET", true)
    );
    assert_eq!(*due, (start - Duration::hours(72)).timestamp());
    let sealed = sealed.clone().unwrap();
    assert!(!sealed.windows(6).any(|w| w == b"482913"));

    // The same request again: the same code, without its plaintext, nothing new written.
    let again = w.issue(request).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.code, "");
    assert_eq!(again.access_code.unwrap().id, code.id);
    assert_eq!(w.outbox(&code.id).await.len(), 1);
    let audited = common::audit_rows(&w.db, &w.tenant).await;
    let creates: Vec<_> = audited
        .iter()
        .filter(|r| r.0 == "ADMIN_CREATE" && r.1 == "access_code")
        .collect();
    assert_eq!(
        creates,
        [&common::audited("ADMIN_CREATE", "access_code", &code.id)]
    );

    // A window opening within the lead time is due at once.
    let soon = w.guest_code(
        &[&locked],
        "570316",
        t0() + Duration::hours(1),
        t0() + Duration::days(1),
    );
    let soon = w.issue(soon).await.unwrap().access_code.unwrap();
    assert_eq!(w.outbox(&soon.id).await[0].2, t0().timestamp());

    let got = w.get(&code.id).await;
    assert_eq!(got.masked_code, "****13");
    assert_eq!(got.doors, code.doors);
}

#[tokio::test]
async fn generated_codes_have_their_length_are_never_trivial_and_differ_on_a_door() {
    let mut w = World::new("tenant-a").await;
    let short = w
        .property_with(
            "Short codes",
            pb::CodeSettings {
                auto_generate: true,
                default_code_length: 4,
                ..Default::default()
            },
        )
        .await;
    let door = w.door_of(&short.id, "Studio", None).await;
    let mut issued = Vec::new();
    for _ in 0..200 {
        let request = w.permanent(&[&door], "");
        let response = w.issue(request).await.unwrap();
        let code = response.code.clone();
        assert_eq!(code.len(), 4, "{code}");
        assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
        assert!(!trivial(&code), "{code}");
        let stored = response.access_code.unwrap();
        assert_eq!(stored.masked_code, format!("****{}", &code[2..]));
        issued.push((code, stored.id));
    }
    let distinct: HashSet<&String> = issued.iter().map(|(c, _)| c).collect();
    assert_eq!(
        distinct.len(),
        issued.len(),
        "no two active codes alike on the door"
    );
    // Each code opens the door as itself.
    for (code, id) in &issued {
        let decision = w.pin(&door, code).await;
        assert!(decision.granted, "{decision:?}");
        assert_eq!(&decision.access_code_id, id);
    }

    // The request's length wins over the property's; without either, six.
    let mut longer = w.permanent(&[&door], "");
    longer.code_length = 9;
    assert_eq!(w.issue(longer).await.unwrap().code.len(), 9);
    let default_door = w.door("Front", None).await;
    let request = w.permanent(&[&default_door], "");
    assert_eq!(w.issue(request).await.unwrap().code.len(), 6);
}

#[tokio::test]
async fn codes_in_use_property_limits_and_disabled_generation_are_refused() {
    let mut w = World::new("tenant-a").await;
    let a = w.door("A", None).await;
    let b = w.door("B", None).await;
    let c = w.door("C", None).await;
    let first = w.permanent(&[&a], "135790");
    let first = w.issue(first).await.unwrap().access_code.unwrap();
    let same = w.permanent(&[&a], "135790");
    assert_reason(w.issue(same).await, Code::AlreadyExists, "CODE_IN_USE");
    let shared = w.permanent(&[&c, &a], "135790");
    assert_reason(w.issue(shared).await, Code::AlreadyExists, "CODE_IN_USE");
    // Another door may have it; a revoked code frees it.
    let elsewhere = w.permanent(&[&b], "135790");
    w.issue(elsewhere).await.unwrap();
    w.revoke(&first.id, "moved out").await.unwrap();
    let reused = w.permanent(&[&a], "135790");
    w.issue(reused).await.unwrap();

    let limited = w
        .property_with(
            "Limited",
            pb::CodeSettings {
                auto_generate: true,
                max_active_codes: 2,
                ..Default::default()
            },
        )
        .await;
    let l1 = w.door_of(&limited.id, "L1", None).await;
    let l2 = w.door_of(&limited.id, "L2", None).await;
    let one = w.permanent(&[&l1], "");
    let one = w.issue(one).await.unwrap().access_code.unwrap();
    let two = w.permanent(&[&l2], "");
    w.issue(two).await.unwrap();
    let three = w.permanent(&[&l1], "");
    let status = assert_reason(
        w.issue(three).await,
        Code::FailedPrecondition,
        "MAX_ACTIVE_CODES",
    );
    assert!(
        status.message().contains("at most 2"),
        "{}",
        status.message()
    );
    w.revoke(&one.id, "").await.unwrap();
    let three = w.permanent(&[&l1], "");
    w.issue(three).await.unwrap();

    let manual = w.property_with("Manual", pb::CodeSettings::default()).await;
    assert!(!manual.code_settings.unwrap().auto_generate);
    let m = w.door_of(&manual.id, "M", None).await;
    let generated = w.permanent(&[&m], "");
    assert_reason(
        w.issue(generated).await,
        Code::FailedPrecondition,
        "CODE_GENERATION_DISABLED",
    );
    let chosen = w.permanent(&[&m], "260817");
    assert_eq!(w.issue(chosen).await.unwrap().code, "260817");
}

#[tokio::test]
async fn stay_codes_follow_the_property_clock_across_dst_and_move_with_the_booking() {
    let mut w = World::new("tenant-a").await;
    let stays = w
        .property_with(
            "Playa",
            pb::CodeSettings {
                auto_generate: true,
                cleaning_code: true,
                cleaning_minutes: 120,
                ..Default::default()
            },
        )
        .await;
    let locked = w.door_of(&stays.id, "Entrance", Some(2001)).await;
    let plain = w.door_of(&stays.id, "Pool gate", None).await;
    let closed = w
        .directory
        .create_door(authorized(
            pb::CreateDoorRequest {
                door: Some(pb::Door {
                    active: false,
                    ..common::door_spec(&stays.id, "Closed wing")
                }),
                request_id: String::new(),
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;

    // Madrid moves to summer time on Sunday 2027-03-28: check-in is at +01:00, check-out
    // at +02:00.
    let stay = w
        .stay("BK-1", &stays.id, (2027, 3, 26), (2027, 3, 29))
        .await
        .unwrap();
    assert!(!stay.existing);
    let guest_code = stay.guest_code.clone().unwrap();
    let cleaning = stay.cleaning_code.clone().unwrap();
    assert_eq!(
        instant(guest_code.start_time.as_ref()),
        utc(2027, 3, 26, 14, 0)
    );
    assert_eq!(
        instant(guest_code.end_time.as_ref()),
        utc(2027, 3, 29, 9, 0)
    );
    assert_eq!(
        instant(cleaning.start_time.as_ref()),
        utc(2027, 3, 29, 9, 0)
    );
    assert_eq!(instant(cleaning.end_time.as_ref()), utc(2027, 3, 29, 11, 0));
    assert_eq!(stay.code.len(), 6);
    assert_eq!(stay.cleaning_plaintext.len(), 6);
    assert_ne!(stay.code, stay.cleaning_plaintext);
    let grantee = guest_code.grantee.clone().unwrap();
    assert_eq!(
        pb::GranteeType::try_from(grantee.r#type).unwrap(),
        pb::GranteeType::Guest
    );
    assert_eq!(grantee.name, "Ana Sol");
    assert_eq!(
        pb::CodePurpose::try_from(guest_code.purpose).unwrap(),
        pb::CodePurpose::Stay
    );
    assert_eq!(
        pb::CodeType::try_from(guest_code.r#type).unwrap(),
        pb::CodeType::Temporary
    );
    let provider = cleaning.grantee.clone().unwrap();
    assert_eq!(
        pb::GranteeType::try_from(provider.r#type).unwrap(),
        pb::GranteeType::Provider
    );
    assert_eq!(provider.name, "Cleaning BK-1");
    assert_eq!(
        pb::CodePurpose::try_from(cleaning.purpose).unwrap(),
        pb::CodePurpose::Cleaning
    );
    assert_eq!(guest_code.booking_reference, "BK-1");
    assert_eq!(guest_code.property_id, stays.id);
    for code in [&guest_code, &cleaning] {
        let doors: HashSet<&str> = code.doors.iter().map(|d| d.door_id.as_str()).collect();
        assert_eq!(
            doors,
            HashSet::from([locked.as_str(), plain.as_str()]),
            "not {closed}"
        );
        assert_eq!(sync(code, &locked), pb::SyncState::Pending);
        assert_eq!(sync(code, &plain), pb::SyncState::NotApplicable);
        let start = instant(code.start_time.as_ref());
        let rows = w.outbox(&code.id).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].0.as_str(), rows[0].1.as_str()),
            (locked.as_str(), "SET")
        );
        assert_eq!(rows[0].2, (start - Duration::hours(72)).timestamp());
    }

    // The guest code works inside its window only; the cleaning code after check-out.
    let before = w.pin(&plain, &stay.code).await;
    assert_eq!(reason(&before), pb::ReasonCode::CodeNotYetValid);
    assert_eq!(
        instant(before.valid_until.as_ref()),
        utc(2027, 3, 26, 14, 0)
    );
    w.at(utc(2027, 3, 28, 12, 0));
    let inside = w.pin(&plain, &stay.code).await;
    assert!(inside.granted, "{inside:?}");
    assert_eq!(inside.access_code_id, guest_code.id);
    assert_eq!(instant(inside.valid_until.as_ref()), utc(2027, 3, 29, 9, 0));
    assert_eq!(
        reason(&w.pin(&plain, &stay.cleaning_plaintext).await),
        pb::ReasonCode::CodeNotYetValid
    );
    w.at(utc(2027, 3, 29, 10, 0));
    assert_eq!(
        reason(&w.pin(&plain, &stay.code).await),
        pb::ReasonCode::CodeExpired
    );
    assert!(w.pin(&plain, &stay.cleaning_plaintext).await.granted);
    w.at(t0());

    // The same booking again: known, no plaintext, nothing changed.
    let again = w
        .stay("BK-1", &stays.id, (2027, 3, 26), (2027, 3, 29))
        .await
        .unwrap();
    assert!(again.existing);
    assert_eq!(
        (again.code.as_str(), again.cleaning_plaintext.as_str()),
        ("", "")
    );
    assert_eq!(again.guest_code.as_ref().unwrap().id, guest_code.id);
    assert_eq!(again.guest_code.as_ref().unwrap().version, 1);
    assert_eq!(again.cleaning_code.as_ref().unwrap().id, cleaning.id);

    // The cleaning code reached its lock; then the dates move a day later.
    w.mark_set(&cleaning.id, &locked).await;
    let moved = w
        .stay("BK-1", &stays.id, (2027, 3, 27), (2027, 3, 30))
        .await
        .unwrap();
    assert!(moved.existing);
    assert_eq!(moved.code, "");
    let moved_guest = moved.guest_code.unwrap();
    let moved_cleaning = moved.cleaning_code.unwrap();
    assert_eq!(moved_guest.id, guest_code.id);
    assert_eq!(moved_guest.version, 2);
    assert_eq!(
        instant(moved_guest.start_time.as_ref()),
        utc(2027, 3, 27, 14, 0)
    );
    assert_eq!(
        instant(moved_guest.end_time.as_ref()),
        utc(2027, 3, 30, 9, 0)
    );
    assert_eq!(
        instant(moved_cleaning.start_time.as_ref()),
        utc(2027, 3, 30, 9, 0)
    );
    assert_eq!(
        instant(moved_cleaning.end_time.as_ref()),
        utc(2027, 3, 30, 11, 0)
    );
    // Not yet written: its SET is rescheduled to the new lead time.
    let guest_rows = w.outbox(&guest_code.id).await;
    assert_eq!(guest_rows.len(), 1, "{guest_rows:?}");
    assert_eq!(guest_rows[0].1, "SET");
    assert!(guest_rows[0].3);
    assert_eq!(
        guest_rows[0].2,
        (utc(2027, 3, 27, 14, 0) - Duration::hours(72)).timestamp()
    );
    // On the lock: a CHANGE moves it there.
    let cleaning_rows = w.outbox(&cleaning.id).await;
    let open: Vec<_> = cleaning_rows.iter().filter(|r| r.3).collect();
    assert_eq!(open.len(), 1, "{cleaning_rows:?}");
    assert_eq!(
        (open[0].0.as_str(), open[0].1.as_str()),
        (locked.as_str(), "CHANGE")
    );
    let updates = common::audit_rows(&w.db, &w.tenant).await;
    for id in [&guest_code.id, &cleaning.id] {
        assert!(updates.contains(&common::audited("ADMIN_UPDATE", "access_code", id)));
    }

    // What cannot be issued.
    let empty = w
        .property_with(
            "Empty",
            pb::CodeSettings {
                auto_generate: true,
                ..Default::default()
            },
        )
        .await;
    assert_reason(
        w.stay("BK-2", &empty.id, (2027, 4, 1), (2027, 4, 3)).await,
        Code::FailedPrecondition,
        "NO_DOORS",
    );
    let unknown = w
        .stay(
            "BK-3",
            "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            (2027, 4, 1),
            (2027, 4, 3),
        )
        .await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);
    assert_invalid(
        w.stay("BK-4", &stays.id, (2027, 2, 30), (2027, 3, 2)).await,
        &["arrival_date"],
    );
    assert_invalid(
        w.stay("BK-4", &stays.id, (2027, 4, 3), (2027, 4, 3)).await,
        &["departure_date"],
    );
    let bad = pb::IssueStayCodesRequest {
        booking_reference: "x".repeat(129),
        property_id: "nope".into(),
        code: "1234".into(),
        ..Default::default()
    };
    let bad = w.codes.issue_stay_codes(authorized(bad, &w.admin)).await;
    assert_invalid(
        bad,
        &[
            "booking_reference",
            "property_id",
            "guest",
            "arrival_date",
            "departure_date",
            "code",
        ],
    );
}

#[tokio::test]
async fn a_revoked_code_stops_opening_and_leaves_its_locks() {
    let mut w = World::new("tenant-a").await;
    let locked = w.door("Front", Some(3001)).await;
    let plain = w.door("Back", None).await;
    let written = w.permanent(&[&locked, &plain], "604851");
    let written = w.issue(written).await.unwrap().access_code.unwrap();
    let pending = w.permanent(&[&locked], "719302");
    let pending = w.issue(pending).await.unwrap().access_code.unwrap();
    assert!(w.pin(&plain, "604851").await.granted);
    w.mark_set(&written.id, &locked).await;

    let revoked = w.revoke(&written.id, "guest left early").await.unwrap();
    assert_eq!(
        pb::CodeStatus::try_from(revoked.status).unwrap(),
        pb::CodeStatus::Revoked
    );
    assert!(revoked.revoke_time.is_some());
    assert_eq!(revoked.version, 2);
    assert_eq!(sync(&revoked, &locked), pb::SyncState::Removing);
    assert_eq!(sync(&revoked, &plain), pb::SyncState::NotApplicable);
    let rows = w.outbox(&written.id).await;
    let open: Vec<_> = rows.iter().filter(|r| r.3).collect();
    assert_eq!(open.len(), 1, "{rows:?}");
    assert_eq!(
        (open[0].0.as_str(), open[0].1.as_str()),
        (locked.as_str(), "REMOVE")
    );
    assert_eq!(
        reason(&w.pin(&plain, "604851").await),
        pb::ReasonCode::CodeInvalid
    );

    // Never written: simply removed, its SET cancelled and the sealed code erased.
    let revoked = w.revoke(&pending.id, "").await.unwrap();
    assert_eq!(sync(&revoked, &locked), pb::SyncState::Removed);
    let rows = w.outbox(&pending.id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1, "SET");
    assert!(!rows[0].3, "closed");
    assert_eq!(rows[0].4, None, "sealed code erased");

    assert_reason(
        w.revoke(&written.id, "again").await,
        Code::FailedPrecondition,
        "CODE_NOT_ACTIVE",
    );
    let unknown = w.revoke("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "").await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);
    assert_invalid(w.revoke("nope", &"x".repeat(501)).await, &["id", "reason"]);

    let reasons = w
        .sql(
            "SELECT metadata FROM access.audit_log WHERE tenant_id = $1 AND action = 'ADMIN_UPDATE' \
             AND target_id = $2",
            &[&w.tenant, &written.id],
        )
        .await;
    assert_eq!(reasons.len(), 1);
    let metadata: String = reasons[0].get(0);
    assert!(metadata.contains("guest left early"), "{metadata}");
}

#[tokio::test]
async fn lists_filter_by_door_grantee_sync_state_purpose_status_and_instant_and_page() {
    let mut w = World::new("tenant-a").await;
    let d1 = w.door("D1", None).await;
    let d2 = w.door("D2", Some(4001)).await;
    let user = common::user(&mut w.directory, &w.admin, "Ula", &["member"]).await;
    let c1 = w.guest_code(
        &[&d1],
        "",
        t0() + Duration::days(1),
        t0() + Duration::days(2),
    );
    let c1 = w.issue(c1).await.unwrap().access_code.unwrap().id;
    let c2 = pb::IssueAccessCodeRequest {
        door_ids: vec![d2.clone()],
        grantee: Some(pb::Grantee {
            r#type: pb::GranteeType::User as i32,
            user_id: user.id.clone(),
            ..Default::default()
        }),
        purpose: pb::CodePurpose::Other as i32,
        r#type: pb::CodeType::Permanent as i32,
        request_id: w.request_id(),
        ..Default::default()
    };
    let c2 = w.issue(c2).await.unwrap().access_code.unwrap();
    assert_eq!(c2.grantee.as_ref().unwrap().name, "Ula", "the user's name");
    let c2 = c2.id;
    let mut c3 = w.guest_code(
        &[&d1, &d2],
        "",
        t0() + Duration::days(3),
        t0() + Duration::days(4),
    );
    c3.grantee = Some(pb::Grantee {
        r#type: pb::GranteeType::Provider as i32,
        name: "Cleaner".into(),
        ..Default::default()
    });
    c3.purpose = pb::CodePurpose::Cleaning as i32;
    let c3 = w.issue(c3).await.unwrap().access_code.unwrap().id;
    let c4 = w.permanent(&[&d1], "");
    let c4 = w.issue(c4).await.unwrap().access_code.unwrap().id;
    w.revoke(&c4, "").await.unwrap();

    let all = ids(&mut w, pb::ListAccessCodesRequest::default()).await;
    assert_eq!(all, [c1.clone(), c2.clone(), c3.clone(), c4.clone()]);
    let by = |f: fn(&mut pb::ListAccessCodesRequest)| {
        let mut r = pb::ListAccessCodesRequest::default();
        f(&mut r);
        r
    };
    let mut r = pb::ListAccessCodesRequest {
        door_id: d2.clone(),
        ..Default::default()
    };
    assert_eq!(ids(&mut w, r.clone()).await, [c2.clone(), c3.clone()]);
    r = pb::ListAccessCodesRequest {
        grantee: user.id.clone(),
        ..Default::default()
    };
    assert_eq!(ids(&mut w, r.clone()).await, [c2.as_str()]);
    r = pb::ListAccessCodesRequest {
        grantee: "Ana".into(),
        ..Default::default()
    };
    assert_eq!(ids(&mut w, r.clone()).await, [c1.as_str()]);
    assert_eq!(
        ids(&mut w, by(|r| r.sync_state = pb::SyncState::Pending as i32)).await,
        [c2.clone(), c3.clone()]
    );
    assert_eq!(
        ids(
            &mut w,
            by(|r| r.sync_state = pb::SyncState::NotApplicable as i32)
        )
        .await,
        [c1.clone(), c3.clone(), c4.clone()]
    );
    assert_eq!(
        ids(&mut w, by(|r| r.purpose = pb::CodePurpose::Cleaning as i32)).await,
        [c3.as_str()]
    );
    assert_eq!(
        ids(&mut w, by(|r| r.status = pb::CodeStatus::Revoked as i32)).await,
        [c4.as_str()]
    );
    assert_eq!(
        ids(&mut w, by(|r| r.status = pb::CodeStatus::Active as i32)).await,
        [c1.clone(), c2.clone(), c3.clone()]
    );
    r = pb::ListAccessCodesRequest {
        active_at: Some(timestamp(t0() + Duration::hours(36))),
        ..Default::default()
    };
    assert_eq!(ids(&mut w, r).await, [c1.clone(), c2.clone()]);
    r = pb::ListAccessCodesRequest {
        active_at: Some(timestamp(t0() + Duration::days(4))),
        ..Default::default()
    };
    assert_eq!(ids(&mut w, r).await, [c2.as_str()], "the end is exclusive");

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = w
            .list(pb::ListAccessCodesRequest {
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.access_codes.len() <= 1);
        seen.extend(page.access_codes.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, all);

    let bad = w
        .list(pb::ListAccessCodesRequest {
            page_size: -1,
            page_token: "garbage".into(),
            door_id: "nope".into(),
            sync_state: 99,
            purpose: 42,
            status: 17,
            active_at: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            ..Default::default()
        })
        .await;
    assert_invalid(
        bad,
        &[
            "page_size",
            "page_token",
            "door_id",
            "sync_state",
            "purpose",
            "status",
            "active_at",
        ],
    );
}

#[tokio::test]
async fn check_access_with_a_code_is_judged_by_window_slots_and_uses() {
    let mut w = World::new("tenant-a").await;
    let door = w.door("Flat 1", None).await;
    let user = common::user(&mut w.directory, &w.admin, "Ula", &["member"]).await;
    let start = t0() + Duration::days(1);
    let end = t0() + Duration::days(2);
    let mut request = w.guest_code(&[&door], "271828", start, end);
    request.grantee = Some(pb::Grantee {
        r#type: pb::GranteeType::User as i32,
        user_id: user.id.clone(),
        ..Default::default()
    });
    let temp = w.issue(request).await.unwrap().access_code.unwrap();

    w.at(start + Duration::hours(1));
    let answer = w
        .check_with(&door, pb::AccessMethod::Pin, "271828")
        .await
        .unwrap();
    let granted = answer.decision.clone().unwrap();
    assert!(granted.granted);
    assert_eq!(reason(&granted), pb::ReasonCode::Granted);
    assert_eq!(
        pb::AccessType::try_from(granted.access_type).unwrap(),
        pb::AccessType::Code
    );
    assert_eq!(granted.access_code_id, temp.id);
    assert_eq!(instant(granted.valid_until.as_ref()), end);
    assert_eq!(
        instant(granted.decision_time.as_ref()),
        start + Duration::hours(1)
    );
    let row = w
        .sql(
            "SELECT action, method, user_id, user_name, metadata, reason_code FROM access.audit_log \
             WHERE tenant_id = $1 AND sequence = $2",
            &[&w.tenant, &answer.audit_sequence],
        )
        .await;
    let (action, method, user_id, user_name, metadata, reason_code): (
        String,
        String,
        String,
        String,
        String,
        String,
    ) = (
        row[0].get(0),
        row[0].get(1),
        row[0].get(2),
        row[0].get(3),
        row[0].get(4),
        row[0].get(5),
    );
    assert_eq!(
        (action.as_str(), method.as_str()),
        ("ACCESS_GRANTED", "PIN")
    );
    assert_eq!(
        (user_id.as_str(), user_name.as_str()),
        (user.id.as_str(), "Ula")
    );
    assert_eq!(reason_code, "GRANTED");
    assert!(
        metadata.contains(&temp.id) && metadata.contains("****28"),
        "{metadata}"
    );
    assert!(!metadata.contains("271828"));

    let passcode = w
        .check_with(&door, pb::AccessMethod::Passcode, "271828")
        .await
        .unwrap();
    assert!(passcode.decision.unwrap().granted);
    let wrong = w.pin(&door, "271829").await;
    assert!(!wrong.granted);
    assert_eq!(reason(&wrong), pb::ReasonCode::CodeInvalid);
    assert_eq!(wrong.access_code_id, "");
    w.at(start - Duration::seconds(1));
    assert_eq!(
        reason(&w.pin(&door, "271828").await),
        pb::ReasonCode::CodeNotYetValid
    );
    w.at(end);
    assert_eq!(
        reason(&w.pin(&door, "271828").await),
        pb::ReasonCode::CodeExpired
    );

    // Tuesdays 09:00-12:00 in Madrid (+01:00 in March).
    w.at(t0());
    let recurring = pb::IssueAccessCodeRequest {
        door_ids: vec![door.clone()],
        grantee: Some(guest("Eva")),
        purpose: pb::CodePurpose::Cleaning as i32,
        r#type: pb::CodeType::Recurring as i32,
        start_time: Some(timestamp(t0())),
        end_time: Some(timestamp(t0() + Duration::days(30))),
        time_slots: vec![pb::TimeSlot {
            day_of_week: 2,
            start: "09:00".into(),
            end: "12:00".into(),
        }],
        code: "314159".into(),
        request_id: w.request_id(),
        ..Default::default()
    };
    let recurring = w.issue(recurring).await.unwrap().access_code.unwrap();
    assert_eq!(recurring.time_slots.len(), 1);
    w.at(utc(2027, 3, 2, 9, 30));
    let inside = w
        .check_with(&door, pb::AccessMethod::Pin, "314159")
        .await
        .unwrap();
    let decision = inside.decision.unwrap();
    assert!(decision.granted, "{decision:?}");
    assert_eq!(
        instant(decision.valid_until.as_ref()),
        utc(2027, 3, 2, 11, 0)
    );
    let name: String = w
        .sql(
            "SELECT user_name FROM access.audit_log WHERE tenant_id = $1 AND sequence = $2",
            &[&w.tenant, &inside.audit_sequence],
        )
        .await[0]
        .get(0);
    assert_eq!(name, "Eva");
    w.at(utc(2027, 3, 2, 11, 0));
    let outside = w.pin(&door, "314159").await;
    assert_eq!(reason(&outside), pb::ReasonCode::CodeOutsideTimeSlot);
    assert_eq!(instant(outside.valid_until.as_ref()), utc(2027, 3, 9, 8, 0));

    // Used up: the count comes from lock records; here it is set directly.
    let mut limited = w.permanent(&[&door], "161803");
    limited.max_usages = 3;
    let limited = w.issue(limited).await.unwrap().access_code.unwrap();
    assert!(w.pin(&door, "161803").await.granted);
    w.sql(
        "UPDATE access.access_codes SET usage_count = 3 WHERE id = $1::text::uuid",
        &[&limited.id],
    )
    .await;
    // Any change of the tenant's codes through the API is seen at once by this replica.
    let other = w.permanent(&[&door], "");
    w.issue(other).await.unwrap();
    assert_eq!(
        reason(&w.pin(&door, "161803").await),
        pb::ReasonCode::CodeExhausted
    );

    // A code only with PIN or PASSCODE, and always with them.
    assert_invalid(
        w.check_with(&door, pb::AccessMethod::Card, "271828").await,
        &["code"],
    );
    assert_invalid(
        w.check_with(&door, pb::AccessMethod::Pin, "").await,
        &["code"],
    );
    assert_invalid(
        w.check_with(&door, pb::AccessMethod::Passcode, "12a4")
            .await,
        &["code"],
    );
    assert_invalid(
        w.check_with(&door, pb::AccessMethod::Pin, "123").await,
        &["code"],
    );
    assert_invalid(
        w.check_with("nope", pb::AccessMethod::Pin, "1234567890")
            .await,
        &["door_id", "code"],
    );
    let unknown = w
        .pin("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "271828")
        .await;
    assert_eq!(reason(&unknown), pb::ReasonCode::DoorNotFound);
}

#[tokio::test]
async fn every_issue_field_is_validated_by_name() {
    let mut w = World::new("tenant-a").await;
    let door = w.door("Front", None).await;
    assert_invalid(
        w.issue(pb::IssueAccessCodeRequest::default()).await,
        &["door_ids", "grantee", "purpose", "type", "request_id"],
    );
    let bad = pb::IssueAccessCodeRequest {
        door_ids: vec![door.clone(), "nope".into(), door.clone()],
        grantee: Some(pb::Grantee {
            r#type: pb::GranteeType::User as i32,
            ..Default::default()
        }),
        purpose: pb::CodePurpose::Other as i32,
        r#type: pb::CodeType::Recurring as i32,
        start_time: Some(timestamp(t0() + Duration::days(2))),
        end_time: Some(timestamp(t0() + Duration::days(1))),
        time_slots: vec![pb::TimeSlot {
            day_of_week: 7,
            start: "9:00".into(),
            end: "24:00".into(),
        }],
        max_usages: -1,
        code: "1234".into(),
        code_length: 3,
        request_id: "r 1".into(),
    };
    assert_invalid(
        w.issue(bad).await,
        &[
            "door_ids[1]",
            "door_ids[2]",
            "grantee.user_id",
            "end_time",
            "time_slots[0].day_of_week",
            "time_slots[0].start",
            "max_usages",
            "code",
            "code_length",
            "request_id",
        ],
    );
    let mut temporary = w.guest_code(&[&door], "12", t0(), t0());
    temporary.start_time = None;
    temporary.end_time = None;
    temporary.grantee = Some(pb::Grantee {
        r#type: pb::GranteeType::Guest as i32,
        ..Default::default()
    });
    temporary.time_slots = vec![pb::TimeSlot::default()];
    assert_invalid(
        w.issue(temporary).await,
        &[
            "grantee.name",
            "start_time",
            "end_time",
            "time_slots",
            "time_slots[0].start",
            "time_slots[0].end",
            "code",
        ],
    );
    let mut permanent = w.permanent(&[&door], "");
    permanent.end_time = Some(timestamp(t0() + Duration::days(1)));
    permanent.door_ids = (0..51).map(|_| door.clone()).collect();
    assert_invalid(w.issue(permanent).await, &["door_ids", "end_time"]);
    let past = w.guest_code(
        &[&door],
        "",
        t0() - Duration::days(2),
        t0() - Duration::days(1),
    );
    assert_invalid(w.issue(past).await, &["end_time"]);
    let mut no_slots = w.guest_code(&[&door], "", t0(), t0() + Duration::days(1));
    no_slots.r#type = pb::CodeType::Recurring as i32;
    assert_invalid(w.issue(no_slots).await, &["time_slots"]);

    // Known shapes, unknown things.
    let unknown_door = w.permanent(&[&door, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"], "");
    assert_invalid(w.issue(unknown_door).await, &["door_ids[1]"]);
    let mut unknown_user = w.permanent(&[&door], "");
    unknown_user.grantee = Some(pb::Grantee {
        r#type: pb::GranteeType::User as i32,
        user_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        ..Default::default()
    });
    assert_invalid(w.issue(unknown_user).await, &["grantee.user_id"]);

    let get = w
        .codes
        .get_access_code(authorized(
            pb::GetAccessCodeRequest { id: "nope".into() },
            &w.admin,
        ))
        .await;
    assert_invalid(get, &["id"]);
    let missing = w
        .codes
        .get_access_code(authorized(
            pb::GetAccessCodeRequest {
                id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            },
            &w.admin,
        ))
        .await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn other_tenants_and_roles_cannot_reach_the_codes() {
    let mut w = World::new("tenant-a").await;
    let door = w.door("Front", None).await;
    let request = w.permanent(&[&door], "918273");
    let code = w.issue(request).await.unwrap().access_code.unwrap();

    let other = token("tenant-b", "admin-b", &["ADMIN"]);
    let get = w
        .codes
        .get_access_code(authorized(
            pb::GetAccessCodeRequest {
                id: code.id.clone(),
            },
            &other,
        ))
        .await;
    assert_eq!(get.unwrap_err().code(), Code::NotFound);
    let list = w
        .codes
        .list_access_codes(authorized(pb::ListAccessCodesRequest::default(), &other))
        .await
        .unwrap()
        .into_inner();
    assert!(list.access_codes.is_empty());
    let revoke = w
        .codes
        .revoke_access_code(authorized(
            pb::RevokeAccessCodeRequest {
                id: code.id.clone(),
                ..Default::default()
            },
            &other,
        ))
        .await;
    assert_eq!(revoke.unwrap_err().code(), Code::NotFound);
    let check = w
        .access
        .check_access(authorized(
            pb::CheckAccessRequest {
                door_id: door.clone(),
                method: pb::AccessMethod::Pin as i32,
                code: "918273".into(),
                ..Default::default()
            },
            &other,
        ))
        .await
        .unwrap()
        .into_inner()
        .decision
        .unwrap();
    assert_eq!(reason(&check), pb::ReasonCode::DoorNotFound);
    let mut theirs = w.permanent(&[&door], "");
    theirs.request_id = "b-1".into();
    assert_invalid(w.issue_as(theirs, &other).await, &["door_ids[0]"]);
    let stay = w
        .codes
        .issue_stay_codes(authorized(
            pb::IssueStayCodesRequest {
                booking_reference: "BK".into(),
                property_id: w.property.id.clone(),
                guest: Some(pb::Guest {
                    name: "Eve".into(),
                    contact: String::new(),
                }),
                arrival_date: Some(date((2027, 4, 1))),
                departure_date: Some(date((2027, 4, 2))),
                ..Default::default()
            },
            &other,
        ))
        .await;
    assert_eq!(stay.unwrap_err().code(), Code::NotFound);
    // Still the owner's, untouched.
    assert_eq!(
        pb::CodeStatus::try_from(w.get(&code.id).await.status).unwrap(),
        pb::CodeStatus::Active
    );

    // Managers and services issue; members do not; reconciliation is not for managers.
    let manager = token("tenant-a", "manager", &["MANAGER"]);
    let service = token("tenant-a", "booking-platform", &["SERVICE"]);
    let member = token("tenant-a", "member", &["member"]);
    let by_manager = w.permanent(&[&door], "");
    w.issue_as(by_manager, &manager).await.unwrap();
    let by_service = w.permanent(&[&door], "");
    w.issue_as(by_service, &service).await.unwrap();
    let by_member = w.permanent(&[&door], "");
    assert_eq!(
        w.issue_as(by_member, &member).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let reconcile = |token: &str| {
        authorized(
            pb::ReconcileLockRequest {
                door_id: door.clone(),
                remove_unmanaged: false,
            },
            token,
        )
    };
    let refused = w
        .codes
        .reconcile_lock(reconcile(&manager))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // The door has no lock: nothing to reconcile; another tenant does not see the door.
    assert_reason(
        w.codes.reconcile_lock(reconcile(&w.admin.clone())).await,
        Code::FailedPrecondition,
        "NO_LOCK",
    );
    let stranger = token("tenant-b", "admin", &["ADMIN"]);
    assert_eq!(
        w.codes
            .reconcile_lock(reconcile(&stranger))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn emergency_unlock_is_for_admins_with_a_reason_and_recorded_first() {
    let mut w = World::new("tenant-a").await;
    let closed = w
        .directory
        .create_door(authorized(
            pb::CreateDoorRequest {
                door: Some(pb::Door {
                    active: false,
                    ..common::door_spec(&w.property.id, "Boiler room")
                }),
                request_id: String::new(),
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let locked = w.door("Front", Some(5001)).await;
    let emergency = |door: &str, reason: &str, request_id: &str| pb::EmergencyUnlockRequest {
        door_id: door.into(),
        reason: reason.into(),
        request_id: request_id.into(),
        client_ip: "198.51.100.4".into(),
    };
    let manager = token("tenant-a", "manager", &["MANAGER"]);
    let refused = w
        .access
        .emergency_unlock(authorized(emergency(&closed, "fire", "e-1"), &manager))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let service = token("tenant-a", "controller", &["SERVICE"]);
    let refused = w
        .access
        .emergency_unlock(authorized(emergency(&closed, "fire", "e-1"), &service))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let invalid = w
        .access
        .emergency_unlock(authorized(emergency("nope", " ", ""), &w.admin))
        .await;
    assert_invalid(invalid, &["door_id", "reason", "request_id"]);
    let long = w
        .access
        .emergency_unlock(authorized(
            emergency(&closed, &"x".repeat(501), "e-1"),
            &w.admin,
        ))
        .await;
    assert_invalid(long, &["reason"]);
    let unknown = w
        .access
        .emergency_unlock(authorized(
            emergency("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "fire", "e-1"),
            &w.admin,
        ))
        .await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);

    // An inactive door without a lock: granted, recorded, nothing actuated.
    let answer = w
        .access
        .emergency_unlock(authorized(
            emergency(&closed, "smoke in the boiler room", "e-2"),
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let decision = answer.decision.unwrap();
    assert!(decision.granted);
    assert_eq!(reason(&decision), pb::ReasonCode::Emergency);
    assert_eq!(
        pb::UnlockOutcome::try_from(answer.outcome).unwrap(),
        pb::UnlockOutcome::NoLock
    );
    // Nothing was actuated, so there is no outcome row.
    assert_eq!(answer.outcome_audit_sequence, 0);
    let rows = w
        .sql(
            "SELECT action, reason_code, reason, metadata, request_id, door_id, actor FROM access.audit_log \
             WHERE tenant_id = $1 AND sequence = $2",
            &[&w.tenant, &answer.audit_sequence],
        )
        .await;
    let row = &rows[0];
    assert_eq!(row.get::<_, String>(0), "EMERGENCY_UNLOCK");
    assert_eq!(row.get::<_, String>(1), "EMERGENCY");
    assert_eq!(row.get::<_, String>(2), "smoke in the boiler room");
    let metadata: serde_json::Value = serde_json::from_str(&row.get::<_, String>(3)).unwrap();
    assert_eq!(metadata["reason"], "smoke in the boiler room");
    assert_eq!(row.get::<_, String>(4), "e-2");
    assert_eq!(row.get::<_, String>(5), closed);
    assert_eq!(row.get::<_, String>(6), "admin");
    let after: i64 = w
        .sql(
            "SELECT count(*) FROM access.audit_log WHERE tenant_id = $1 AND sequence > $2",
            &[&w.tenant, &answer.audit_sequence],
        )
        .await[0]
        .get(0);
    assert_eq!(after, 0);

    // A door with a lock, lock-gateway unreachable: the request is on record, and the
    // caller is told nothing was sent.
    let refused = w
        .access
        .emergency_unlock(authorized(
            emergency(&locked, "trapped guest", "e-3"),
            &w.admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    let recorded = w
        .sql(
            "SELECT action FROM access.audit_log WHERE tenant_id = $1 AND request_id = 'e-3'",
            &[&w.tenant],
        )
        .await;
    let recorded: Vec<String> = recorded.iter().map(|r| r.get(0)).collect();
    assert_eq!(recorded, ["EMERGENCY_UNLOCK"]);
}

#[tokio::test]
async fn no_plaintext_code_is_stored_anywhere() {
    let mut w = World::new("tenant-a").await;
    let nine = w
        .property_with(
            "Nine",
            pb::CodeSettings {
                auto_generate: true,
                default_code_length: 9,
                cleaning_code: true,
                ..Default::default()
            },
        )
        .await;
    let locked = w.door_of(&nine.id, "Front", Some(6001)).await;
    let plain = w.door_of(&nine.id, "Back", None).await;
    let mut plaintexts = Vec::new();
    let chosen = w.permanent(&[&locked, &plain], "824061937");
    plaintexts.push(w.issue(chosen).await.unwrap().code);
    let generated = w.guest_code(
        &[&locked],
        "",
        t0() + Duration::days(1),
        t0() + Duration::days(3),
    );
    let generated = w.issue(generated).await.unwrap();
    plaintexts.push(generated.code.clone());
    let stay = w
        .stay("BK-9", &nine.id, (2027, 3, 26), (2027, 3, 29))
        .await
        .unwrap();
    plaintexts.push(stay.code.clone());
    plaintexts.push(stay.cleaning_plaintext.clone());
    w.stay("BK-9", &nine.id, (2027, 3, 27), (2027, 3, 30))
        .await
        .unwrap();
    w.revoke(&generated.access_code.unwrap().id, "done")
        .await
        .unwrap();
    assert!(w.pin(&plain, "824061937").await.granted);
    assert!(!w.pin(&plain, "824061938").await.granted);
    assert!(
        plaintexts.iter().all(|p| p.len() == 9),
        "{}",
        plaintexts.len()
    );

    let tables: Vec<String> = w
        .sql(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'access' AND table_type = 'BASE TABLE' ORDER BY 1",
            &[],
        )
        .await
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    for expected in [
        "access_codes",
        "access_code_doors",
        "audit_log",
        "provisioning_outbox",
    ] {
        assert!(tables.iter().any(|t| t == expected), "{tables:?}");
    }
    let mut rows = 0;
    for table in &tables {
        for row in w
            .sql(&format!("SELECT t::text FROM access.{table} t"), &[])
            .await
        {
            let text: String = row.get(0);
            rows += 1;
            for code in &plaintexts {
                assert!(
                    !text.contains(code.as_str()),
                    "a plaintext code in access.{table}"
                );
            }
        }
    }
    assert!(rows > 20, "{rows}");
    let sealed = w
        .sql(
            "SELECT code_sealed FROM access.provisioning_outbox WHERE code_sealed IS NOT NULL",
            &[],
        )
        .await;
    assert!(!sealed.is_empty());
    for row in sealed {
        let bytes: Vec<u8> = row.get(0);
        for code in &plaintexts {
            assert!(!bytes.windows(code.len()).any(|w| w == code.as_bytes()));
        }
    }
}

#[tokio::test]
async fn a_request_id_reused_for_another_request_is_refused_and_a_failed_one_given_back() {
    let mut w = World::new("tenant-a").await;
    let door = w.door("Flat 1", None).await;
    let first_request = w.permanent(&[&door], "58317");
    let first = w.issue(first_request.clone()).await.unwrap();
    assert_eq!(first.code, "58317");
    let again = w.issue(first_request.clone()).await.unwrap();
    assert!(again.replayed);
    assert!(again.code.is_empty());
    assert_eq!(again.access_code.unwrap().id, first.access_code.unwrap().id);

    // The same id with another code is not "done": nothing is issued.
    let reused = w
        .issue(pb::IssueAccessCodeRequest {
            code: "58391".into(),
            ..first_request.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::FailedPrecondition);
    assert_eq!(common::reason(&reused), "REQUEST_ID_REUSED");
    let stored: i64 = w
        .sql(
            "SELECT count(*) FROM access.access_codes WHERE tenant_id = $1",
            &[&w.tenant],
        )
        .await[0]
        .get(0);
    assert_eq!(stored, 1);
    // Nothing that could give the code away is kept for the comparison.
    let kept = w
        .sql("SELECT fingerprint FROM access.request_fingerprints", &[])
        .await;
    assert!(kept.iter().all(|row| {
        let print: Vec<u8> = row.get(0);
        print.len() == 32 && !print.windows(5).any(|w| w == b"58317")
    }));

    // A request refused as invalid gives its id back: the corrected one is carried out.
    let invalid = pb::IssueAccessCodeRequest {
        request_id: "retry-1".into(),
        ..w.permanent(&[&door], "1111")
    };
    let refused = w.issue(invalid.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let corrected = w
        .issue(pb::IssueAccessCodeRequest {
            code: "60428".into(),
            ..invalid
        })
        .await
        .unwrap();
    assert_eq!(corrected.code, "60428");

    // Creates in the directory compare the whole request too.
    let create = |name: &str| pb::CreateDoorRequest {
        door: Some(common::door_spec(&w.property.id, name)),
        request_id: "door-1".into(),
    };
    let door_one = w
        .directory
        .create_door(authorized(create("Pool gate"), &w.admin))
        .await
        .unwrap()
        .into_inner();
    let repeated = w
        .directory
        .create_door(authorized(create("Pool gate"), &w.admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(repeated.id, door_one.id);
    let other = w
        .directory
        .create_door(authorized(create("Garage"), &w.admin))
        .await
        .unwrap_err();
    assert_eq!(common::reason(&other), "REQUEST_ID_REUSED");
}

/// A revoked code and one whose window ends are events for a backend that follows the
/// tenant: CODE_REVOKED when revoked, CODE_EXPIRED once the expiry sweep passes its end.
#[tokio::test]
async fn revoked_and_expired_codes_are_events() {
    use latchkey::pb::access::v1::event_service_client::EventServiceClient;
    let mut w = World::new("tenant-a").await;
    let door = w.door("Front", None).await;
    let stay = w.guest_code(
        &[&door],
        "",
        t0() + Duration::hours(1),
        t0() + Duration::hours(2),
    );
    let stay = w.issue(stay).await.unwrap().access_code.unwrap();
    let provider = w.permanent(&[&door], "604851");
    let provider = w.issue(provider).await.unwrap().access_code.unwrap();
    w.revoke(&provider.id, "contract ended").await.unwrap();
    w.clock.set((t0() + Duration::hours(3)).timestamp_millis());
    let mut events = EventServiceClient::new(w._server.channel().await);
    let request = || {
        authorized(
            pb::ListEventsRequest {
                filter: Some(pb::EventFilter {
                    kinds: vec![
                        pb::EventKind::CodeRevoked as i32,
                        pb::EventKind::CodeExpired as i32,
                    ],
                    ..Default::default()
                }),
                start: Some(pb::EventStart {
                    // From the log's beginning (rows carry the wall clock's time).
                    position: Some(pb::event_start::Position::SinceTime(
                        prost_types::Timestamp::default(),
                    )),
                }),
                ..Default::default()
            },
            &w.admin,
        )
    };
    // The sweep runs on the service's own schedule (every second here).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let found = loop {
        let found = events
            .list_events(request())
            .await
            .unwrap()
            .into_inner()
            .events;
        if found.len() >= 2 || tokio::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let seen: Vec<(pb::EventKind, String)> = found
        .iter()
        .map(|e| (e.kind(), e.code.clone().unwrap_or_default().code_id))
        .collect();
    assert_eq!(
        seen,
        [
            (pb::EventKind::CodeRevoked, provider.id.clone()),
            (pb::EventKind::CodeExpired, stay.id.clone()),
        ]
    );
}

//! Every captured response of the reference (§11) decodes.

use serde::de::DeserializeOwned;

use super::client::check_errcode;
use super::error::ErrorCode;
use super::types::*;

macro_rules! sample {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/captured/",
            $name
        ))
    };
}

fn parse<T: DeserializeOwned>(json: &str) -> T {
    let value = check_errcode(serde_json::from_str(json).expect("sample is JSON"))
        .expect("sample is a success");
    serde_json::from_value(value).expect("sample decodes")
}

fn error_code(json: &str) -> ErrorCode {
    check_errcode(serde_json::from_str(json).expect("sample is JSON"))
        .expect_err("sample is an error")
        .code()
        .expect("an API error")
}

#[test]
fn envelopes() {
    let ok: Envelope = parse(sample!("envelope_success.json"));
    assert_eq!(ok.errcode, Some(0));
    assert_eq!(
        error_code(sample!("envelope_failed.json")),
        ErrorCode::Failed
    );
    assert_eq!(
        error_code(sample!("envelope_token_expired.json")),
        ErrorCode::TokenInvalid
    );
    assert_eq!(
        error_code(sample!("envelope_invalid_token.json")),
        ErrorCode::TokenUnknown
    );
}

#[test]
fn remote_queries() {
    let state: OpenState = parse(sample!("open_state.json"));
    assert_eq!(state.bolt(), BoltState::Unlocked);
    let battery: ElectricQuantity = parse(sample!("electric_quantity.json"));
    assert_eq!(battery.electric_quantity, 68);
}

#[test]
fn tokens_and_users() {
    let grant: RawToken = parse(sample!("token_grant.json"));
    let grant = TokenGrant::from(grant);
    assert_eq!(grant.uid, Some(1234));
    assert_eq!(grant.expires_in, 7_776_000);
    let refresh = TokenGrant::from(parse::<RawToken>(sample!("token_refresh.json")));
    assert_eq!(refresh.uid, None);
    // Secrets stay out of Debug.
    assert!(!format!("{refresh:?}").contains("xxx"));
    let user: RegisteredUser = parse(sample!("register.json"));
    assert_eq!(user.username, "prefixed_user");
}

#[test]
fn lock_details() {
    let detail: LockDetail = parse(sample!("lock_detail_ha_const.json"));
    assert_eq!(detail.lock_id, 7_252_408);
    assert_eq!(detail.timezone_raw_offset, Some(46_800_000));
    assert_eq!(detail.auto_lock_time, Some(60));
    assert_eq!(detail.has_gateway, Some(true));
    assert_eq!(detail.lock_version.as_ref().and_then(|v| v.scene), Some(2));
    let detail: LockDetail = parse(sample!("lock_detail_issue42.json"));
    assert_eq!(detail.lock_id, 6_901_284);
    assert_eq!(detail.hardware_revision.as_deref(), Some("1.8"));
    let detail: LockDetail = parse(sample!("lock_detail_issue182.json"));
    assert_eq!(detail.lock_id, 18_951_786);
    let feature = detail.feature_value.as_deref().expect("featureValue");
    assert!(has_feature(feature, feature::UNLOCK_VIA_GATEWAY));
    assert!(!has_feature(feature, feature::WIFI));
    assert!(has_feature(feature, 63));
    // Lock secrets are not decoded at all.
    assert!(!format!("{detail:?}").contains("REMOVEDKEY"));
}

#[test]
fn lock_lists() {
    let page: Page<LockSummary> = parse(sample!("lock_list_issue43.json"));
    assert_eq!(page.list.len(), 1);
    let lock = &page.list[0];
    assert_eq!(lock.lock_id, 2_182_419);
    assert_eq!(lock.group_id, None);
    assert!(lock.is_remote_capable());
    let item: LockSummary = parse(sample!("lock_list_item_issue152.json"));
    assert_eq!(item.lock_id, 16_498_712);
    assert_eq!(item.electric_quantity, Some(100));
}

#[test]
fn passcodes() {
    let entry: PasscodeEntry = parse(sample!("passcode_item.json"));
    assert_eq!(entry.keyboard_pwd_id, 311_183_184);
    assert_eq!(
        entry.keyboard_pwd.as_ref().map(PasscodeText::expose),
        Some("1234")
    );
    assert_eq!(entry.keyboard_pwd_type, Some(2));
    assert_eq!(entry.end_date, Some(0));
    assert_eq!(entry.is_custom, Some(false));
    assert!(!format!("{entry:?}").contains("1234"));
    // The docs' string-typed keyboardPwdType and a leading-zero code.
    let entry: PasscodeEntry = serde_json::from_str(
        r#"{"keyboardPwdId": 1, "keyboardPwd": "0506", "keyboardPwdType": "3"}"#,
    )
    .expect("lenient passcode");
    assert_eq!(entry.keyboard_pwd_type, Some(3));
    assert_eq!(
        entry.keyboard_pwd.as_ref().map(PasscodeText::expose),
        Some("0506")
    );
}

#[test]
fn passage_mode() {
    let config: PassageModeConfig = parse(sample!("passage_mode_6_to_6.json"));
    assert_eq!(
        (config.start_date, config.end_date),
        (Some(360), Some(1080))
    );
    let config: PassageModeConfig = parse(sample!("passage_mode_all_day.json"));
    assert_eq!(config.is_all_day, Some(1));
    let config: PassageModeConfig = parse(sample!("passage_mode_null_dates.json"));
    assert_eq!(config.start_date, None);
    assert_eq!(config.week_days.map(|d| d.len()), Some(7));
}

#[test]
fn gateways() {
    let page: Page<Gateway> = parse(sample!("gateway_page_1.json"));
    assert_eq!((page.pages, page.page_no), (Some(2), Some(1)));
    assert_eq!(page.list[0].gateway_id, 34_144);
    assert_eq!(page.list[0].is_online, Some(true));
    let past_end: Page<Gateway> = parse(sample!("gateway_page_3.json"));
    assert!(past_end.list.is_empty());
    let empty: Page<Gateway> = parse(sample!("gateway_empty.json"));
    assert_eq!(empty.pages, Some(0));
    let detail: Gateway = parse(sample!("gateway_detail_doc.json"));
    assert_eq!(detail.is_online, Some(false));
    let with_bool: Gateway =
        serde_json::from_str(r#"{"gatewayId": 1, "isOnline": true}"#).expect("bool flag");
    assert_eq!(with_bool.is_online, Some(true));
    let locks: List<GatewayLock> = parse(sample!("gateway_lock_list.json"));
    assert_eq!(locks.list.len(), 2);
    assert_eq!(locks.list[1].rssi, Some(-71));
}

#[test]
fn lock_records() {
    let page: Page<LockRecord> = parse(sample!("records_page_1.json"));
    assert_eq!(page.list.len(), 20);
    assert_eq!(page.pages, Some(4));
    let first = &page.list[0];
    assert_eq!(first.record_type, Some(47));
    assert_eq!(first.username, None);
    assert!(
        first
            .keyboard_pwd
            .as_ref()
            .is_some_and(PasscodeText::is_empty)
    );
    let by_code = &page.list[2];
    assert_eq!(
        by_code.keyboard_pwd.as_ref().map(PasscodeText::expose),
        Some("0506")
    );
    let past_end: Page<LockRecord> = parse(sample!("records_page_5.json"));
    assert!(past_end.list.is_empty());
}

fn form(body: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(body.trim()).expect("form-encoded")
}

#[test]
fn callbacks() {
    let fields = form(sample!("callback_real.form"));
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["lockId", "notifyType", "records", "admin", "lockMac"]
    );
    let callback = Callback::from_form(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .expect("callback decodes");
    assert_eq!(callback.notify_type, Some(1));
    assert_eq!(callback.lock_id, Some(7_252_408));
    assert_eq!(callback.admin.as_deref(), Some("jonas@lemon.nz"));
    assert_eq!(callback.records.len(), 1);
    let record = &callback.records[0];
    assert_eq!(
        (record.record_type, record.record_type_from_lock),
        (Some(7), Some(17))
    );
    assert_eq!(record.server_date, Some(1_680_810_180_029));
    assert_eq!(record.username.as_deref(), Some("Jonas"));

    let fields = form(sample!("callback_console_test.form"));
    let callback = Callback::from_form(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .expect("console test callback decodes");
    assert_eq!(callback.lock_id, Some(222));
    assert_eq!(callback.records[0].lock_id, Some(232_332));
    assert_eq!(callback.records[0].username, None);
}

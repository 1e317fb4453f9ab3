//! TTLock's wire types. Ids and times are `i64` (times in epoch milliseconds); nearly
//! every field is optional because locks omit what they do not support; unknown fields
//! are ignored. Lock secrets TTLock also returns (`lockData`, `adminPwd`, `noKeyPwd`,
//! `aesKeyStr`, ...) are deliberately not decoded.

use std::fmt;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::de;

/// A passcode (or, in records, a card number): digits kept as text for their leading
/// zeros, and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct PasscodeText(#[serde(deserialize_with = "passcode_text")] String);

fn passcode_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(de::opt_string(d)?.unwrap_or_default())
}

impl PasscodeText {
    pub fn new(digits: impl Into<String>) -> Self {
        Self(digits.into())
    }

    /// The digits, for the one request that writes them.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for PasscodeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasscodeText([{} digits])", self.0.len())
    }
}

impl From<&str> for PasscodeText {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// The `{errcode, errmsg, description}` envelope of actions and errors.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Envelope {
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub errcode: Option<i64>,
    #[serde(default)]
    pub errmsg: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `/oauth2/token` as sent; turned into [`TokenGrant`] at once so tokens live only in
/// secrets.
#[derive(Deserialize)]
pub(crate) struct RawToken {
    pub access_token: String,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub uid: Option<i64>,
    pub refresh_token: String,
    #[serde(deserialize_with = "de::i64")]
    pub expires_in: i64,
}

/// A granted or refreshed token. Refresh responses carry no `uid`.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub access_token: SecretString,
    pub uid: Option<i64>,
    pub refresh_token: SecretString,
    /// Lifetime in seconds (TTLock: 90 days).
    pub expires_in: i64,
}

impl From<RawToken> for TokenGrant {
    fn from(raw: RawToken) -> Self {
        Self {
            access_token: SecretString::from(raw.access_token),
            uid: raw.uid,
            refresh_token: SecretString::from(raw.refresh_token),
            expires_in: raw.expires_in,
        }
    }
}

/// `/v3/user/register`.
#[derive(Debug, Clone, Deserialize)]
pub struct RegisteredUser {
    pub username: String,
}

/// One page of a list: `{total, pages, pageNo, pageSize, list}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub total: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub pages: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub page_no: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub page_size: Option<i64>,
    #[serde(default = "Vec::new")]
    pub list: Vec<T>,
}

/// An unpaginated `{list}` (`gateway/listLock`, `gateway/listByLock`).
#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    #[serde(default = "Vec::new")]
    pub list: Vec<T>,
}

/// The capability bitmask `featureValue` (upper-case hex, may exceed 64 bits).
pub fn has_feature(feature_value: &str, bit: u32) -> bool {
    u128::from_str_radix(feature_value.trim(), 16)
        .ok()
        .and_then(|v| v.checked_shr(bit))
        .is_some_and(|v| v & 1 == 1)
}

/// Feature bits the gateway uses.
pub mod feature {
    pub const LOCK_REMOTELY: u32 = 8;
    pub const UNLOCK_VIA_GATEWAY: u32 = 10;
    pub const DOOR_SENSOR: u32 = 13;
    pub const PASSAGE_MODE: u32 = 22;
    pub const WIFI: u32 = 56;
}

/// An item of `lock/list`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockSummary {
    #[serde(deserialize_with = "de::i64")]
    pub lock_id: i64,
    #[serde(default)]
    pub lock_name: Option<String>,
    #[serde(default)]
    pub lock_alias: Option<String>,
    #[serde(default)]
    pub lock_mac: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub electric_quantity: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub electric_quantity_update_date: Option<i64>,
    #[serde(default)]
    pub feature_value: Option<String>,
    #[serde(default, deserialize_with = "de::opt_flag")]
    pub has_gateway: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub group_id: Option<i64>,
    #[serde(default)]
    pub group_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub date: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub bind_date: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub timezone_raw_offset: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub passage_mode: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub keyboard_pwd_version: Option<i32>,
}

impl LockSummary {
    /// Reachable through a gateway or over WiFi (HA's rule; bit 56 alone is unreliable).
    pub fn is_remote_capable(&self) -> bool {
        self.has_gateway == Some(true)
            || self
                .feature_value
                .as_deref()
                .is_some_and(|f| has_feature(f, feature::WIFI))
    }
}

/// `lock/detail`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockDetail {
    #[serde(deserialize_with = "de::i64")]
    pub lock_id: i64,
    #[serde(default)]
    pub lock_name: Option<String>,
    #[serde(default)]
    pub lock_alias: Option<String>,
    #[serde(default)]
    pub lock_mac: Option<String>,
    #[serde(default)]
    pub model_num: Option<String>,
    #[serde(default)]
    pub hardware_revision: Option<String>,
    #[serde(default)]
    pub firmware_revision: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub electric_quantity: Option<i32>,
    #[serde(default)]
    pub feature_value: Option<String>,
    #[serde(default, deserialize_with = "de::opt_flag")]
    pub has_gateway: Option<bool>,
    /// Offset of the lock's local time from UTC, in milliseconds.
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub timezone_raw_offset: Option<i64>,
    /// Seconds; -1 or 0 disabled.
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub auto_lock_time: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub lock_sound: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub sound_volume: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub privacy_lock: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub tamper_alert: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub reset_button: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub open_direction: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub passage_mode: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub passage_mode_auto_unlock: Option<i32>,
    /// 1 frozen, 2 not frozen.
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub is_frozen: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub date: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub lock_update_date: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub keyboard_pwd_version: Option<i32>,
    #[serde(default)]
    pub lock_version: Option<LockVersion>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockVersion {
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub group_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub protocol_version: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub protocol_type: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub org_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub scene: Option<i32>,
}

/// An item of `gateway/list`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    #[serde(deserialize_with = "de::i64")]
    pub gateway_id: i64,
    #[serde(default)]
    pub gateway_mac: Option<String>,
    #[serde(default)]
    pub gateway_name: Option<String>,
    /// 1 G1, 2 G2, 3 G3 wired, 4 G4 4G.
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub gateway_version: Option<i32>,
    #[serde(default)]
    pub network_name: Option<String>,
    #[serde(default)]
    pub network_mac: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub lock_num: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_flag")]
    pub is_online: Option<bool>,
}

/// An item of `gateway/listLock`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayLock {
    #[serde(deserialize_with = "de::i64")]
    pub lock_id: i64,
    #[serde(default)]
    pub lock_mac: Option<String>,
    #[serde(default)]
    pub lock_name: Option<String>,
    #[serde(default)]
    pub lock_alias: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub rssi: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub update_date: Option<i64>,
}

/// An item of `gateway/listByLock`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockGateway {
    #[serde(deserialize_with = "de::i64")]
    pub gateway_id: i64,
    #[serde(default)]
    pub gateway_mac: Option<String>,
    #[serde(default)]
    pub gateway_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub rssi: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub rssi_update_date: Option<i64>,
}

/// Bolt position from `lock/queryOpenState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoltState {
    Locked,
    Unlocked,
    Unknown,
}

/// `lock/queryOpenState`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenState {
    /// 0 locked, 1 unlocked, 2 unknown.
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub state: Option<i32>,
    /// Door sensor, field name from HA only: 0 open, 1 closed.
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub sensor_state: Option<i32>,
}

impl OpenState {
    pub fn bolt(&self) -> BoltState {
        match self.state {
            Some(0) => BoltState::Locked,
            Some(1) => BoltState::Unlocked,
            _ => BoltState::Unknown,
        }
    }
}

/// `lock/queryElectricQuantity`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ElectricQuantity {
    #[serde(deserialize_with = "de::i64")]
    pub electric_quantity: i64,
}

/// `keyboardPwd/add`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddedPasscode {
    #[serde(deserialize_with = "de::i64")]
    pub keyboard_pwd_id: i64,
}

/// An item of `lock/listKeyboardPwd`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasscodeEntry {
    #[serde(deserialize_with = "de::i64")]
    pub keyboard_pwd_id: i64,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub lock_id: Option<i64>,
    #[serde(default)]
    pub keyboard_pwd: Option<PasscodeText>,
    #[serde(default)]
    pub keyboard_pwd_name: Option<String>,
    /// 1 one-time, 2 permanent, 3 period, 4 delete, 5–14 cyclic.
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub keyboard_pwd_type: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub start_date: Option<i64>,
    /// 0 for permanent passcodes.
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub end_date: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub send_date: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_flag")]
    pub is_custom: Option<bool>,
    #[serde(default)]
    pub sender_username: Option<String>,
    #[serde(default)]
    pub receiver_username: Option<String>,
    #[serde(default)]
    pub nick_name: Option<String>,
    /// Delivery state: 1 normal, 4 adding, 5 add failed, 6 modifying, 7 modify failed,
    /// 8 deleting, 9 delete failed.
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub status: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub keyboard_pwd_version: Option<i32>,
}

/// An item of `lockRecord/list`, and a record inside a callback.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockRecord {
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub record_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub lock_id: Option<i64>,
    #[serde(default)]
    pub lock_mac: Option<String>,
    /// Cloud record type (reference §6.1).
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub record_type: Option<i32>,
    /// Lock-side record type (reference §6.2).
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub record_type_from_lock: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub sub_record_type: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_flag")]
    pub success: Option<bool>,
    /// App account, or the passcode/card/fingerprint name; may be `null`.
    #[serde(default)]
    pub username: Option<String>,
    /// Passcode, card number or fingerprint number; may be empty.
    #[serde(default)]
    pub keyboard_pwd: Option<PasscodeText>,
    /// Time on the lock's clock.
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub lock_date: Option<i64>,
    /// Time the cloud received it.
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub server_date: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub electric_quantity: Option<i32>,
}

/// The flat `lock/getPassageModeConfig` shape; `startDate`/`endDate` are minutes of day.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassageModeConfig {
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub passage_mode: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub auto_unlock: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub is_all_day: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub start_date: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub end_date: Option<i32>,
    #[serde(default)]
    pub week_days: Option<Vec<i32>>,
}

/// A callback TTLock POSTs to the application's URL, decoded from its form fields.
#[derive(Debug, Clone)]
pub struct Callback {
    /// 1 lock records, 2 gateway online/offline, 3 WiFi lock online/offline, 4 async
    /// failure, 7 standalone door sensor.
    pub notify_type: Option<i32>,
    pub lock_id: Option<i64>,
    pub lock_mac: Option<String>,
    pub admin: Option<String>,
    /// Records from every `records` field.
    pub records: Vec<LockRecord>,
}

impl Callback {
    /// Decodes the form fields; unknown fields are ignored, a `records` field that is
    /// not a JSON array of records is an error.
    pub fn from_form<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, serde_json::Error> {
        let mut callback = Self {
            notify_type: None,
            lock_id: None,
            lock_mac: None,
            admin: None,
            records: Vec::new(),
        };
        for (name, value) in fields {
            match name {
                "notifyType" => callback.notify_type = value.trim().parse().ok(),
                "lockId" => callback.lock_id = value.trim().parse().ok(),
                "lockMac" => callback.lock_mac = Some(value.to_owned()),
                "admin" => callback.admin = Some(value.to_owned()),
                "records" => callback
                    .records
                    .extend(serde_json::from_str::<Vec<LockRecord>>(value)?),
                _ => {}
            }
        }
        Ok(callback)
    }
}

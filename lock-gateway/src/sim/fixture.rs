//! The simulator's seed: accounts with their gateways and locks, as JSON.

use serde::{Deserialize, Serialize};

/// The default seed shipped with the simulator.
pub const DEFAULT_FIXTURE: &str = include_str!("../../fixtures/ttlock-sim.json");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fixture {
    pub accounts: Vec<FixtureAccount>,
}

impl Fixture {
    pub fn from_json(json: &str) -> serde_json::Result<Self> {
        serde_json::from_str(json)
    }

    pub fn default_fixture() -> Self {
        // The shipped fixture is checked by a unit test.
        Self::from_json(DEFAULT_FIXTURE).unwrap_or_default()
    }
}

/// One TTLock app account under one developer application (fake values).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FixtureAccount {
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    /// Plain text; the simulator compares its MD5.
    pub password: String,
    pub uid: i64,
    /// Sent as `admin` in callbacks; the username when absent.
    #[serde(default)]
    pub admin: Option<String>,
    #[serde(default)]
    pub gateways: Vec<FixtureGateway>,
    #[serde(default)]
    pub locks: Vec<FixtureLock>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FixtureGateway {
    pub gateway_id: i64,
    #[serde(default)]
    pub gateway_mac: String,
    #[serde(default)]
    pub gateway_name: String,
    #[serde(default = "default_gateway_version")]
    pub gateway_version: i32,
    #[serde(default = "yes")]
    pub is_online: bool,
    #[serde(default)]
    pub network_name: Option<String>,
}

impl FixtureGateway {
    pub fn new(gateway_id: i64) -> Self {
        Self {
            gateway_id,
            gateway_mac: format!(
                "D6:E0:88:CE:{:02X}:{:02X}",
                (gateway_id >> 8) & 0xff,
                gateway_id & 0xff
            ),
            gateway_name: format!("G2_{gateway_id}"),
            gateway_version: default_gateway_version(),
            is_online: true,
            network_name: Some("simulated".to_owned()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FixtureLock {
    pub lock_id: i64,
    #[serde(default)]
    pub lock_mac: String,
    #[serde(default)]
    pub lock_name: String,
    #[serde(default)]
    pub lock_alias: String,
    /// Gateways in reach, best signal first; empty for Bluetooth-only or WiFi locks.
    #[serde(default)]
    pub gateway_ids: Vec<i64>,
    /// A WiFi lock takes remote commands without a gateway.
    #[serde(default)]
    pub wifi: bool,
    /// The "remote unlock" switch of the TTLock app (off → -4043).
    #[serde(default = "yes")]
    pub remote_unlock: bool,
    #[serde(default = "default_battery")]
    pub electric_quantity: i32,
    /// How far the lock's clock runs ahead of the server's (negative: behind).
    #[serde(default)]
    pub clock_offset_ms: i64,
    #[serde(default = "default_feature_value")]
    pub feature_value: String,
    #[serde(default)]
    pub timezone_raw_offset: i64,
    #[serde(default)]
    pub auto_lock_time: Option<i32>,
    #[serde(default = "yes")]
    pub locked: bool,
    #[serde(default)]
    pub model_num: Option<String>,
}

impl FixtureLock {
    /// A gateway-connected lock with defaults.
    pub fn new(lock_id: i64, gateway_ids: Vec<i64>) -> Self {
        Self {
            lock_id,
            lock_mac: format!(
                "16:72:4C:CC:{:02X}:{:02X}",
                (lock_id >> 8) & 0xff,
                lock_id & 0xff
            ),
            lock_name: format!("S31_{lock_id}"),
            lock_alias: format!("Door {lock_id}"),
            gateway_ids,
            wifi: false,
            remote_unlock: true,
            electric_quantity: default_battery(),
            clock_offset_ms: 0,
            feature_value: default_feature_value(),
            timezone_raw_offset: 0,
            auto_lock_time: Some(30),
            locked: true,
            model_num: Some("SN9206_PV53".to_owned()),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_gateway_version() -> i32 {
    2
}

fn default_battery() -> i32 {
    90
}

fn default_feature_value() -> String {
    // A real lock's bitmask (reference §7): passcodes, remote lock, gateway unlock.
    "F44354CD5F3".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_fixture_parses() {
        let fixture = Fixture::from_json(DEFAULT_FIXTURE).expect("default fixture");
        assert!(!fixture.accounts.is_empty());
        assert!(fixture.accounts.iter().all(|a| !a.locks.is_empty()));
    }
}

//! Faults switchable at run time, through `POST /_sim/faults` or the handle.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// How long every gateway-relayed command takes.
    pub remote_latency_ms: u64,
    /// Gateways reported offline (-3002) in addition to the fixture's.
    pub offline_gateways: Vec<i64>,
    /// Answer 30006 to an account above this many requests in any one second.
    pub rate_limit_per_second: Option<u32>,
    /// Failures handed out in order to matching requests.
    pub inject: Vec<InjectedFailure>,
    /// `lockRecord/list` rounds serverDate to whole seconds, as the reference's 2020
    /// sample (§11.8) suggests, while callbacks carry it to the millisecond (§8.2).
    pub list_server_date_in_seconds: bool,
}

/// One scripted failure, used `times` times.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InjectedFailure {
    /// The path it applies to (e.g. `/v3/lock/unlock`); absent: any gateway-relayed command.
    #[serde(default)]
    pub path: Option<String>,
    /// The `errcode` to answer with (HTTP 200).
    #[serde(default)]
    pub errcode: Option<i32>,
    /// Or an HTTP status to answer with.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// Whether the command still reaches the lock (the ambiguous errcode 1 case).
    #[serde(default)]
    pub executed: bool,
    #[serde(default = "one")]
    pub times: u32,
}

impl InjectedFailure {
    pub fn errcode(code: i32) -> Self {
        Self {
            path: None,
            errcode: Some(code),
            http_status: None,
            executed: false,
            times: 1,
        }
    }

    pub fn http(status: u16) -> Self {
        Self {
            http_status: Some(status),
            errcode: None,
            ..Self::errcode(0)
        }
    }

    pub fn on(mut self, path: &str) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    pub fn executed(mut self) -> Self {
        self.executed = true;
        self
    }

    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }
}

fn one() -> u32 {
    1
}

//! The simulated cloud: accounts, tokens, locks, gateways, passcodes and records, and
//! the rules TTLock applies to them. Everything here is synchronous and runs under one
//! mutex; the HTTP layer adds latency and concurrency around it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use rand::Rng as _;
use serde::Serialize;
use serde_json::{Value, json};

use super::faults::{Faults, InjectedFailure};
use super::fixture::{Fixture, FixtureAccount, FixtureGateway, FixtureLock};
use crate::ttlock::md5_hex;

/// Accepted distance between a request's `date` and server time (reference §3).
pub const DATE_TOLERANCE_MS: i64 = 300_000;
/// Custom passcodes a lock holds (reference §5.9.2).
pub const MAX_CUSTOM_PASSCODES: usize = 250;

/// A TTLock error answer: `errcode` with HTTP 200, or a bare HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    Code(i32),
    Http(u16),
}

pub type Reply = Result<Value, Fail>;

/// The documented `errmsg` of the codes the simulator emits.
pub fn errmsg(code: i32) -> (&'static str, &'static str) {
    match code {
        1 => ("failed or means no", "表示失败或否"),
        10000 => ("client_id does not exist", ""),
        10001 => ("invalid client", ""),
        10003 => ("invalid token", ""),
        10004 => ("invalid grant", "token无授权，token已失效或被撤销授权"),
        10007 => ("invalid account or invalid password", ""),
        10011 => ("invalid refresh_token", ""),
        20002 => ("not lock admin", ""),
        30005 => ("password must be md5 encrypted", ""),
        30006 => ("exceeds the restrictions of API call number", ""),
        80000 => ("date must be current time, in 5 minutes", ""),
        90000 => ("internal server error", ""),
        -3 => ("Invalid Parameter", ""),
        -1003 => ("Lock does not exist", ""),
        -2012 => ("The Lock is not connected to any Gateway", ""),
        -2032 => ("passcode too simple", ""),
        -3002 => ("The gateway is offline", ""),
        -3003 => ("The gateway is busy. Please try again later", ""),
        -3006 => ("Invalid Passcode", ""),
        -3007 => (
            "The same passcode already exists. Please use another one.",
            "",
        ),
        -3009 => ("There is NO SPACE to store Customized Passcodes", ""),
        -3037 => ("The lock is busy", ""),
        -4043 => (
            "The function is not supported for this lock.",
            "此锁不支持该操作",
        ),
        _ => ("error", ""),
    }
}

/// The success envelope of actions, as observed.
pub fn ok_envelope() -> Value {
    json!({"errcode": 0, "errmsg": "none error message or means yes", "description": "表示成功或是"})
}

/// A passcode as the simulated cloud holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPasscode {
    pub id: i64,
    pub lock_id: i64,
    pub code: String,
    pub name: Option<String>,
    /// 2 permanent, 3 period.
    pub kind: i32,
    pub start_ms: i64,
    /// 0 for permanent.
    pub end_ms: i64,
    pub send_ms: i64,
}

/// A lock record as the simulated cloud holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRecord {
    pub record_id: i64,
    pub lock_id: i64,
    pub record_type: i32,
    pub record_type_from_lock: i32,
    pub success: bool,
    pub username: Option<String>,
    pub keyboard_pwd: String,
    pub lock_date: i64,
    pub server_date: i64,
    pub electric_quantity: i32,
}

/// What the simulator observed; for tests and `GET /_sim/stats`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimStats {
    pub requests: u64,
    pub requests_by_path: BTreeMap<String, u64>,
    pub logins: u64,
    pub refreshes: u64,
    /// Gateway-relayed commands received (including refused and failed ones).
    pub remote_commands: u64,
    /// Commands that arrived while another was in flight on the same gateway or lock.
    pub overlaps: u64,
    /// Unlocks that reached a lock, per lock.
    pub unlocks: BTreeMap<i64, u64>,
    /// Highest number of requests seen from one account within one second, by username.
    pub max_rate_per_second: BTreeMap<String, u32>,
    pub rate_limited: u64,
    pub callbacks_delivered: u64,
    pub callbacks_failed: u64,
    /// Every errcode answered, by code.
    pub errcodes: BTreeMap<i32, u64>,
}

struct Token {
    account: usize,
    expires_at_ms: i64,
    revoked: bool,
}

struct LockState {
    owner: usize,
    fixture: FixtureLock,
    locked: bool,
}

struct GatewayState {
    owner: usize,
    fixture: FixtureGateway,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BusyKey {
    Gateway(i64),
    Lock(i64),
}

/// A gateway-relayed command that passed the checks and holds its gateway.
#[derive(Debug)]
pub struct Ticket {
    pub account: usize,
    pub lock_id: i64,
    pub path: String,
    pub params: HashMap<String, String>,
    pub busy: BusyKey,
}

pub struct State {
    accounts: Vec<FixtureAccount>,
    tokens: HashMap<String, Token>,
    refresh_tokens: HashMap<String, usize>,
    locks: BTreeMap<i64, LockState>,
    gateways: BTreeMap<i64, GatewayState>,
    passcodes: BTreeMap<i64, SimPasscode>,
    records: Vec<SimRecord>,
    pending: Vec<SimRecord>,
    busy: HashSet<BusyKey>,
    windows: HashMap<usize, VecDeque<Instant>>,
    next_passcode_id: i64,
    next_record_id: i64,
    /// The cloud's stamp of the last record it received.
    last_server_date: i64,
    pub token_lifetime_secs: i64,
    pub faults: Faults,
    pub stats: SimStats,
    pub callback_url: Option<String>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("accounts", &self.accounts.len())
            .field("locks", &self.locks.len())
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

type Params = HashMap<String, String>;

fn param<'a>(params: &'a Params, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| params.get(*n))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn int_param(params: &Params, name: &str) -> Result<Option<i64>, Fail> {
    match param(params, &[name]) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| Fail::Code(-3)),
    }
}

fn required_int(params: &Params, name: &str) -> Result<i64, Fail> {
    int_param(params, name)?.ok_or(Fail::Code(-3))
}

fn random_token() -> String {
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// Repeated digits or a run like 123456 / 654321 (reference: -2032).
fn too_simple(code: &str) -> bool {
    let digits: Vec<i32> = code.bytes().map(|b| i32::from(b - b'0')).collect();
    let steps: HashSet<i32> = digits.windows(2).map(|w| w[1] - w[0]).collect();
    steps.len() == 1 && steps.iter().all(|s| s.abs() <= 1)
}

fn page<T: Serialize>(items: Vec<T>, params: &Params, max_size: i64) -> Reply {
    let page_no = int_param(params, "pageNo")?.unwrap_or(1);
    let page_size = int_param(params, "pageSize")?.unwrap_or(20);
    if page_no < 1 || page_size < 1 {
        return Err(Fail::Code(-3));
    }
    let page_size = page_size.min(max_size);
    let total = items.len() as i64;
    let pages = (total + page_size - 1) / page_size;
    let start = usize::try_from((page_no - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
    let list: Vec<T> = items
        .into_iter()
        .skip(start)
        .take(usize::try_from(page_size).unwrap_or(usize::MAX))
        .collect();
    // Key order as observed: total, pages, pageNo, pageSize, list.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Page<T> {
        total: i64,
        pages: i64,
        page_no: i64,
        page_size: i64,
        list: Vec<T>,
    }
    serde_json::to_value(Page {
        total,
        pages,
        page_no,
        page_size,
        list,
    })
    .map_err(|_| Fail::Code(90000))
}

impl State {
    pub fn new(fixture: Fixture, token_lifetime_secs: i64, faults: Faults) -> Self {
        let mut locks = BTreeMap::new();
        let mut gateways = BTreeMap::new();
        for (owner, account) in fixture.accounts.iter().enumerate() {
            for gateway in &account.gateways {
                gateways.insert(
                    gateway.gateway_id,
                    GatewayState {
                        owner,
                        fixture: gateway.clone(),
                    },
                );
            }
            for lock in &account.locks {
                locks.insert(
                    lock.lock_id,
                    LockState {
                        owner,
                        locked: lock.locked,
                        fixture: lock.clone(),
                    },
                );
            }
        }
        Self {
            accounts: fixture.accounts,
            tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            locks,
            gateways,
            passcodes: BTreeMap::new(),
            records: Vec::new(),
            pending: Vec::new(),
            busy: HashSet::new(),
            windows: HashMap::new(),
            next_passcode_id: 311_183_184,
            next_record_id: 1_628_522_538,
            last_server_date: 0,
            token_lifetime_secs,
            faults,
            stats: SimStats::default(),
            callback_url: None,
        }
    }

    pub fn accounts(&self) -> &[FixtureAccount] {
        &self.accounts
    }

    pub fn count_errcode(&mut self, code: i32) {
        *self.stats.errcodes.entry(code).or_default() += 1;
    }

    /// Records a request of `account` in its one-second window; refuses it above the
    /// configured limit.
    fn meter(&mut self, account: usize) -> Result<(), Fail> {
        let now = Instant::now();
        let window = self.windows.entry(account).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t).as_millis() >= 1000)
        {
            window.pop_front();
        }
        window.push_back(now);
        let seen = u32::try_from(window.len()).unwrap_or(u32::MAX);
        let username = self.accounts[account].username.clone();
        let max = self.stats.max_rate_per_second.entry(username).or_default();
        *max = (*max).max(seen);
        if self
            .faults
            .rate_limit_per_second
            .is_some_and(|limit| seen > limit)
        {
            self.stats.rate_limited += 1;
            return Err(Fail::Code(30006));
        }
        Ok(())
    }

    // ---- /oauth2/token ------------------------------------------------------------

    pub fn token(&mut self, params: &Params, now_ms: i64) -> Reply {
        let client_id = param(params, &["clientId", "client_id"]).ok_or(Fail::Code(10000))?;
        let secret = param(params, &["clientSecret", "client_secret"]).unwrap_or_default();
        if !self.accounts.iter().any(|a| a.client_id == client_id) {
            return Err(Fail::Code(10000));
        }
        if !self
            .accounts
            .iter()
            .any(|a| a.client_id == client_id && a.client_secret == secret)
        {
            return Err(Fail::Code(10001));
        }
        if param(params, &["grant_type"]) == Some("refresh_token") {
            let presented = param(params, &["refresh_token"]).ok_or(Fail::Code(10011))?;
            let account = *self
                .refresh_tokens
                .get(presented)
                .ok_or(Fail::Code(10011))?;
            if self.accounts[account].client_id != client_id {
                return Err(Fail::Code(10011));
            }
            self.meter(account)?;
            // The refresh token rotates and the old access tokens end.
            self.refresh_tokens.remove(presented);
            for token in self.tokens.values_mut().filter(|t| t.account == account) {
                token.revoked = true;
            }
            self.stats.refreshes += 1;
            let (access, refresh) = self.issue(account, now_ms);
            return Ok(json!({
                "access_token": access, "refresh_token": refresh, "openid": self.accounts[account].uid,
                "scope": "user,key,room", "token_type": "Bearer", "expires_in": self.token_lifetime_secs,
            }));
        }
        let username = param(params, &["username"]).ok_or(Fail::Code(10007))?;
        let password = param(params, &["password"]).ok_or(Fail::Code(10007))?;
        if password.len() != 32
            || !password
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Fail::Code(30005));
        }
        let account = self
            .accounts
            .iter()
            .position(|a| {
                a.client_id == client_id
                    && a.username == username
                    && md5_hex(&a.password) == password
            })
            .ok_or(Fail::Code(10007))?;
        self.meter(account)?;
        self.stats.logins += 1;
        let (access, refresh) = self.issue(account, now_ms);
        Ok(json!({
            "access_token": access, "uid": self.accounts[account].uid, "refresh_token": refresh,
            "openid": self.accounts[account].uid, "scope": "user,key,room", "token_type": "Bearer",
            "expires_in": self.token_lifetime_secs,
        }))
    }

    fn issue(&mut self, account: usize, now_ms: i64) -> (String, String) {
        let access = random_token();
        let refresh = random_token();
        self.tokens.insert(
            access.clone(),
            Token {
                account,
                expires_at_ms: now_ms.saturating_add(self.token_lifetime_secs.saturating_mul(1000)),
                revoked: false,
            },
        );
        self.refresh_tokens.insert(refresh.clone(), account);
        (access, refresh)
    }

    pub fn revoke_access_tokens(&mut self) {
        for token in self.tokens.values_mut() {
            token.revoked = true;
        }
    }

    pub fn revoke_refresh_tokens(&mut self) {
        self.refresh_tokens.clear();
    }

    // ---- /v3 ----------------------------------------------------------------------

    /// The checks every `/v3` call passes first: client, token, `date`, rate.
    pub fn authenticate(&mut self, params: &Params, now_ms: i64) -> Result<usize, Fail> {
        let client_id = param(params, &["clientId"]).ok_or(Fail::Code(10000))?;
        if !self.accounts.iter().any(|a| a.client_id == client_id) {
            return Err(Fail::Code(10000));
        }
        let presented = param(params, &["accessToken"]).ok_or(Fail::Code(10003))?;
        let token = self.tokens.get(presented).ok_or(Fail::Code(10003))?;
        let account = token.account;
        if self.accounts[account].client_id != client_id {
            return Err(Fail::Code(10003));
        }
        if token.revoked || now_ms >= token.expires_at_ms {
            return Err(Fail::Code(10004));
        }
        let date = int_param(params, "date")?.ok_or(Fail::Code(-3))?;
        if (date - now_ms).abs() > DATE_TOLERANCE_MS {
            return Err(Fail::Code(80000));
        }
        self.meter(account)?;
        Ok(account)
    }

    /// Takes the next scripted failure for `path`, if any.
    pub fn take_injected(&mut self, path: &str, remote: bool) -> Option<InjectedFailure> {
        let index = self.faults.inject.iter().position(|f| match &f.path {
            Some(p) => p == path,
            None => remote,
        })?;
        let failure = self.faults.inject[index].clone();
        if failure.times <= 1 {
            self.faults.inject.remove(index);
        } else {
            self.faults.inject[index].times -= 1;
        }
        Some(failure)
    }

    fn own_lock(&self, account: usize, lock_id: i64) -> Result<&LockState, Fail> {
        let lock = self.locks.get(&lock_id).ok_or(Fail::Code(-1003))?;
        if lock.owner != account {
            return Err(Fail::Code(20002));
        }
        Ok(lock)
    }

    /// Whether a request is relayed to the lock (reference §5.0 "remote?").
    pub fn is_remote(path: &str, params: &Params) -> bool {
        match path {
            "/v3/lock/unlock"
            | "/v3/lock/lock"
            | "/v3/lock/queryOpenState"
            | "/v3/lock/queryElectricQuantity" => true,
            "/v3/keyboardPwd/add" => param(params, &["addType"]) == Some("2"),
            "/v3/keyboardPwd/change" => param(params, &["changeType"]) == Some("2"),
            "/v3/keyboardPwd/delete" => param(params, &["deleteType"]) == Some("2"),
            _ => false,
        }
    }

    /// Admits a gateway-relayed command: the lock must be reachable and its gateway
    /// free. Overlapping commands are counted and refused with -3003 (or -3037).
    pub fn begin_remote(
        &mut self,
        account: usize,
        path: &str,
        params: &Params,
    ) -> Result<Ticket, Fail> {
        self.stats.remote_commands += 1;
        let lock_id = required_int(params, "lockId")?;
        let lock = self.own_lock(account, lock_id)?;
        if path == "/v3/keyboardPwd/add" || path == "/v3/keyboardPwd/change" {
            let name = if path.ends_with("add") {
                "keyboardPwd"
            } else {
                "newKeyboardPwd"
            };
            if let Some(code) = param(params, &[name]) {
                validate_format(code)?;
            } else if path.ends_with("add") {
                return Err(Fail::Code(-3));
            }
        }
        if !lock.fixture.remote_unlock && (path == "/v3/lock/unlock" || path == "/v3/lock/lock") {
            return Err(Fail::Code(-4043));
        }
        let busy = if lock.fixture.wifi {
            BusyKey::Lock(lock_id)
        } else {
            if lock.fixture.gateway_ids.is_empty() {
                return Err(Fail::Code(-2012));
            }
            let online = lock.fixture.gateway_ids.iter().copied().find(|id| {
                self.gateways.get(id).is_some_and(|g| g.fixture.is_online)
                    && !self.faults.offline_gateways.contains(id)
            });
            BusyKey::Gateway(online.ok_or(Fail::Code(-3002))?)
        };
        if !self.busy.insert(busy) {
            self.stats.overlaps += 1;
            return Err(Fail::Code(match busy {
                BusyKey::Gateway(_) => -3003,
                BusyKey::Lock(_) => -3037,
            }));
        }
        Ok(Ticket {
            account,
            lock_id,
            path: path.to_owned(),
            params: params.clone(),
            busy,
        })
    }

    /// Completes a command once its latency has passed and frees its gateway.
    pub fn finish_remote(&mut self, ticket: Ticket, now_ms: i64) -> Reply {
        self.busy.remove(&ticket.busy);
        let injected = self.take_injected(&ticket.path, true);
        let reply = match &injected {
            Some(failure) if !failure.executed => Err(fail_of(failure)),
            _ => self.apply_remote(&ticket, now_ms),
        };
        match (reply, injected) {
            (Ok(_), Some(failure)) => Err(fail_of(&failure)),
            (reply, _) => reply,
        }
    }

    fn apply_remote(&mut self, ticket: &Ticket, now_ms: i64) -> Reply {
        let lock_id = ticket.lock_id;
        let username = self.accounts[ticket.account].username.clone();
        match ticket.path.as_str() {
            "/v3/lock/unlock" => {
                self.set_locked(lock_id, false);
                *self.stats.unlocks.entry(lock_id).or_default() += 1;
                // Unlock through the gateway (§6.1 12, §6.2 28).
                self.record(lock_id, 12, 28, true, Some(username), String::new(), now_ms);
                Ok(ok_envelope())
            }
            "/v3/lock/lock" => {
                self.set_locked(lock_id, true);
                // Lock by app (§6.1 11, §6.2 26).
                self.record(lock_id, 11, 26, true, Some(username), String::new(), now_ms);
                Ok(ok_envelope())
            }
            "/v3/lock/queryOpenState" => {
                let locked = self.locks.get(&lock_id).is_some_and(|l| l.locked);
                Ok(json!({"state": if locked { 0 } else { 1 }}))
            }
            "/v3/lock/queryElectricQuantity" => {
                let battery = self
                    .locks
                    .get(&lock_id)
                    .map_or(0, |l| l.fixture.electric_quantity);
                Ok(json!({"electricQuantity": battery}))
            }
            "/v3/keyboardPwd/add" => self.add_passcode(ticket.account, &ticket.params, now_ms),
            "/v3/keyboardPwd/change" => self.change_passcode(&ticket.params, now_ms),
            "/v3/keyboardPwd/delete" => self.delete_passcode(&ticket.params, now_ms),
            _ => Err(Fail::Code(-3)),
        }
    }

    fn set_locked(&mut self, lock_id: i64, locked: bool) {
        if let Some(lock) = self.locks.get_mut(&lock_id) {
            lock.locked = locked;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        lock_id: i64,
        record_type: i32,
        record_type_from_lock: i32,
        success: bool,
        username: Option<String>,
        keyboard_pwd: String,
        now_ms: i64,
    ) {
        let Some(lock) = self.locks.get(&lock_id) else {
            return;
        };
        // The lock stamps whole seconds by its own clock.
        let lock_date = (now_ms + lock.fixture.clock_offset_ms).div_euclid(1000) * 1000;
        self.next_record_id += 1;
        let remote = lock.fixture.wifi || !lock.fixture.gateway_ids.is_empty();
        // The cloud stamps each upload to the millisecond (reference §8.2): two entries
        // in one second of the lock's clock are two uploads with two stamps.
        let server_date = now_ms.max(self.last_server_date + 1);
        self.last_server_date = server_date;
        let record = SimRecord {
            record_id: self.next_record_id,
            lock_id,
            record_type,
            record_type_from_lock,
            success,
            username,
            keyboard_pwd,
            lock_date,
            server_date,
            electric_quantity: lock.fixture.electric_quantity,
        };
        // Only gateway and WiFi locks report in real time, and so call back.
        if remote {
            self.pending.push(record.clone());
        }
        self.records.push(record);
    }

    /// Records created since the last call, for callbacks.
    pub fn take_pending(&mut self) -> Vec<SimRecord> {
        std::mem::take(&mut self.pending)
    }

    fn add_passcode(&mut self, account: usize, params: &Params, now_ms: i64) -> Reply {
        let lock_id = required_int(params, "lockId")?;
        self.own_lock(account, lock_id)?;
        let code = param(params, &["keyboardPwd"])
            .ok_or(Fail::Code(-3))?
            .to_owned();
        validate_format(&code)?;
        let kind = int_param(params, "keyboardPwdType")?.unwrap_or(3);
        let (start_ms, end_ms) = match kind {
            2 => (int_param(params, "startDate")?.unwrap_or(now_ms), 0),
            3 => (
                int_param(params, "startDate")?.ok_or(Fail::Code(-3))?,
                int_param(params, "endDate")?.ok_or(Fail::Code(-3))?,
            ),
            _ => return Err(Fail::Code(-3)),
        };
        let on_lock: Vec<&SimPasscode> = self
            .passcodes
            .values()
            .filter(|p| p.lock_id == lock_id)
            .collect();
        if on_lock.iter().any(|p| p.code == code) {
            return Err(Fail::Code(-3007));
        }
        if on_lock.len() >= MAX_CUSTOM_PASSCODES {
            return Err(Fail::Code(-3009));
        }
        self.next_passcode_id += 1;
        let id = self.next_passcode_id;
        let name = param(params, &["keyboardPwdName"]).map(str::to_owned);
        self.passcodes.insert(
            id,
            SimPasscode {
                id,
                lock_id,
                code: code.clone(),
                name: name.clone(),
                kind: i32::try_from(kind).unwrap_or(3),
                start_ms,
                end_ms,
                send_ms: now_ms,
            },
        );
        // Passcode added on the lock (§6.2 93; the cloud list has no own code for it).
        self.record(lock_id, 93, 93, true, name, code, now_ms);
        Ok(json!({"keyboardPwdId": id}))
    }

    fn change_passcode(&mut self, params: &Params, now_ms: i64) -> Reply {
        let lock_id = required_int(params, "lockId")?;
        let id = required_int(params, "keyboardPwdId")?;
        let new_code = param(params, &["newKeyboardPwd"]).map(str::to_owned);
        if let Some(code) = &new_code {
            validate_format(code)?;
            if self
                .passcodes
                .values()
                .any(|p| p.lock_id == lock_id && p.id != id && &p.code == code)
            {
                return Err(Fail::Code(-3007));
            }
        }
        // Unknown ids succeed, as observed.
        let Some(passcode) = self.passcodes.get_mut(&id).filter(|p| p.lock_id == lock_id) else {
            return Ok(ok_envelope());
        };
        if let Some(code) = new_code {
            passcode.code = code;
        }
        if let Some(name) = param(params, &["keyboardPwdName"]) {
            passcode.name = Some(name.to_owned());
        }
        if let Some(start) = int_param(params, "startDate")? {
            passcode.start_ms = start;
        }
        if let Some(end) = int_param(params, "endDate")? {
            passcode.end_ms = end;
        }
        let (name, code) = (passcode.name.clone(), passcode.code.clone());
        // Passcode modified on the lock (§6.2 5).
        self.record(lock_id, 5, 5, true, name, code, now_ms);
        Ok(ok_envelope())
    }

    fn delete_passcode(&mut self, params: &Params, now_ms: i64) -> Reply {
        let lock_id = required_int(params, "lockId")?;
        let id = required_int(params, "keyboardPwdId")?;
        if self
            .passcodes
            .get(&id)
            .is_some_and(|p| p.lock_id == lock_id)
            && let Some(removed) = self.passcodes.remove(&id)
        {
            // Passcode deleted on the lock (§6.2 6).
            self.record(lock_id, 6, 6, true, removed.name, removed.code, now_ms);
        }
        Ok(ok_envelope())
    }

    /// A `/v3` call answered by the cloud alone.
    pub fn cloud(&mut self, account: usize, path: &str, params: &Params, now_ms: i64) -> Reply {
        match path {
            "/v3/lock/list" => {
                let locks: Vec<Value> = self
                    .locks
                    .values()
                    .filter(|l| l.owner == account)
                    .map(|l| lock_json(l, false))
                    .collect();
                page(locks, params, 1000)
            }
            "/v3/lock/detail" => {
                let lock = self.own_lock(account, required_int(params, "lockId")?)?;
                Ok(lock_json(lock, true))
            }
            "/v3/gateway/list" => {
                let gateways: Vec<Value> = self
                    .gateways
                    .values()
                    .filter(|g| g.owner == account)
                    .map(|g| {
                        let lock_num = self
                            .locks
                            .values()
                            .filter(|l| l.fixture.gateway_ids.contains(&g.fixture.gateway_id))
                            .count();
                        let online = g.fixture.is_online
                            && !self.faults.offline_gateways.contains(&g.fixture.gateway_id);
                        json!({
                            "gatewayId": g.fixture.gateway_id, "gatewayMac": g.fixture.gateway_mac,
                            "gatewayName": g.fixture.gateway_name, "gatewayVersion": g.fixture.gateway_version,
                            "networkName": g.fixture.network_name, "lockNum": lock_num,
                            "isOnline": i32::from(online),
                        })
                    })
                    .collect();
                page(gateways, params, 200)
            }
            "/v3/gateway/listLock" => {
                let gateway_id = required_int(params, "gatewayId")?;
                match self.gateways.get(&gateway_id) {
                    Some(g) if g.owner == account => {}
                    _ => return Err(Fail::Code(-4037)),
                }
                let list: Vec<Value> = self
                    .locks
                    .values()
                    .filter_map(|l| {
                        let rank = l
                            .fixture
                            .gateway_ids
                            .iter()
                            .position(|id| *id == gateway_id)?;
                        Some(json!({
                            "lockId": l.fixture.lock_id, "rssi": rssi(rank),
                            "lockAlias": l.fixture.lock_alias, "updateDate": now_ms,
                            "lockMac": l.fixture.lock_mac, "lockName": l.fixture.lock_name,
                        }))
                    })
                    .collect();
                Ok(json!({"list": list}))
            }
            "/v3/gateway/listByLock" => {
                let lock = self.own_lock(account, required_int(params, "lockId")?)?;
                let list: Vec<Value> = lock
                    .fixture
                    .gateway_ids
                    .iter()
                    .enumerate()
                    .filter_map(|(rank, id)| {
                        let g = self.gateways.get(id)?;
                        Some(json!({
                            "gatewayId": id, "gatewayMac": g.fixture.gateway_mac,
                            "gatewayName": g.fixture.gateway_name, "rssi": rssi(rank),
                            "rssiUpdateDate": now_ms,
                        }))
                    })
                    .collect();
                Ok(json!({"list": list}))
            }
            "/v3/lock/listKeyboardPwd" => {
                let lock_id = required_int(params, "lockId")?;
                self.own_lock(account, lock_id)?;
                let username = &self.accounts[account].username;
                let mut list: Vec<&SimPasscode> = self
                    .passcodes
                    .values()
                    .filter(|p| p.lock_id == lock_id)
                    .collect();
                // orderBy 1 (and the default): newest first.
                if param(params, &["orderBy"]) != Some("0") {
                    list.sort_by_key(|p| std::cmp::Reverse((p.send_ms, p.id)));
                }
                let list: Vec<Value> = list
                    .into_iter()
                    .map(|p| {
                        json!({
                            "endDate": p.end_ms, "sendDate": p.send_ms, "keyboardPwdId": p.id,
                            "nickName": p.name, "keyboardPwdType": p.kind, "lockId": p.lock_id,
                            "keyboardPwdVersion": 4, "isCustom": 1, "keyboardPwdName": p.name,
                            "keyboardPwd": p.code, "startDate": p.start_ms,
                            "senderUsername": username, "receiverUsername": "", "status": 1,
                        })
                    })
                    .collect();
                page(list, params, 200)
            }
            "/v3/lockRecord/list" => {
                let lock_id = required_int(params, "lockId")?;
                self.own_lock(account, lock_id)?;
                let start = int_param(params, "startDate")?.unwrap_or(i64::MIN);
                let end = int_param(params, "endDate")?
                    .filter(|e| *e > 0)
                    .unwrap_or(i64::MAX);
                let mut list: Vec<&SimRecord> = self
                    .records
                    .iter()
                    .filter(|r| r.lock_id == lock_id && r.lock_date >= start && r.lock_date <= end)
                    .collect();
                list.sort_by_key(|r| std::cmp::Reverse((r.server_date, r.record_id)));
                let whole_seconds = self.faults.list_server_date_in_seconds;
                let list: Vec<Value> = list
                    .into_iter()
                    .map(|r| record_json(r, whole_seconds))
                    .collect();
                page(list, params, 200)
            }
            "/v3/keyboardPwd/add" => match param(params, &["addType"]) {
                None | Some("1") => self.add_passcode(account, params, now_ms),
                _ => Err(Fail::Code(-3)),
            },
            "/v3/keyboardPwd/change" => {
                self.own_lock(account, required_int(params, "lockId")?)?;
                self.change_passcode(params, now_ms)
            }
            "/v3/keyboardPwd/delete" => {
                self.own_lock(account, required_int(params, "lockId")?)?;
                self.delete_passcode(params, now_ms)
            }
            _ => Err(Fail::Http(404)),
        }
    }

    /// Someone types `code` on the lock's keypad.
    pub fn keypad(&mut self, lock_id: i64, code: &str, now_ms: i64) -> Option<bool> {
        self.locks.get(&lock_id)?;
        let matching = self
            .passcodes
            .values()
            .find(|p| {
                p.lock_id == lock_id
                    && p.code == code
                    && p.start_ms <= now_ms
                    && (p.end_ms == 0 || now_ms < p.end_ms)
            })
            .map(|p| p.name.clone());
        match matching {
            Some(name) => {
                self.set_locked(lock_id, false);
                // Unlock by passcode (§6.1 4 / §6.2 4).
                self.record(lock_id, 4, 4, true, name, code.to_owned(), now_ms);
            }
            // Unknown passcode (§6.2 7), reported under the passcode type.
            None => self.record(lock_id, 4, 7, false, None, code.to_owned(), now_ms),
        }
        self.records.last().map(|r| r.success)
    }

    pub fn passcodes(&self, lock_id: i64) -> Vec<SimPasscode> {
        self.passcodes
            .values()
            .filter(|p| p.lock_id == lock_id)
            .cloned()
            .collect()
    }

    pub fn records(&self, lock_id: i64) -> Vec<SimRecord> {
        self.records
            .iter()
            .filter(|r| r.lock_id == lock_id)
            .cloned()
            .collect()
    }

    pub fn is_locked(&self, lock_id: i64) -> Option<bool> {
        self.locks.get(&lock_id).map(|l| l.locked)
    }

    /// The lock reports a new battery level (cached by the cloud, carried by records).
    pub fn set_battery(&mut self, lock_id: i64, percent: i32) -> bool {
        match self.locks.get_mut(&lock_id) {
            Some(lock) => {
                lock.fixture.electric_quantity = percent;
                true
            }
            None => false,
        }
    }

    /// Someone deletes a passcode on the lock or in the TTLock app.
    pub fn remove_passcode(&mut self, passcode_id: i64) -> bool {
        self.passcodes.remove(&passcode_id).is_some()
    }

    /// The lock is deleted from its account (reset or transferred).
    pub fn remove_lock(&mut self, lock_id: i64) -> bool {
        self.passcodes.retain(|_, p| p.lock_id != lock_id);
        self.locks.remove(&lock_id).is_some()
    }

    /// `(lockMac, admin)` for a lock's callbacks.
    pub fn callback_identity(&self, lock_id: i64) -> Option<(String, String)> {
        let lock = self.locks.get(&lock_id)?;
        let account = &self.accounts[lock.owner];
        Some((
            lock.fixture.lock_mac.clone(),
            account
                .admin
                .clone()
                .unwrap_or_else(|| account.username.clone()),
        ))
    }
}

fn fail_of(failure: &InjectedFailure) -> Fail {
    match (failure.http_status, failure.errcode) {
        (Some(status), _) => Fail::Http(status),
        (None, Some(code)) => Fail::Code(code),
        (None, None) => Fail::Code(1),
    }
}

fn validate_format(code: &str) -> Result<(), Fail> {
    if !(4..=9).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Fail::Code(-3006));
    }
    if too_simple(code) {
        return Err(Fail::Code(-2032));
    }
    Ok(())
}

/// Signal by rank of the gateway for a lock: the first is the strongest.
fn rssi(rank: usize) -> i32 {
    -60 - 10 * i32::try_from(rank).unwrap_or(10)
}

fn lock_json(lock: &LockState, detail: bool) -> Value {
    let f = &lock.fixture;
    let mut value = json!({
        "date": 1_608_383_197_000_i64, "lockAlias": f.lock_alias, "lockMac": f.lock_mac,
        "passageMode": 2, "timezoneRawOffset": f.timezone_raw_offset, "lockId": f.lock_id,
        "featureValue": f.feature_value, "electricQuantity": f.electric_quantity,
        "hasGateway": i32::from(!f.gateway_ids.is_empty()), "keyboardPwdVersion": 4,
        "lockName": f.lock_name, "specialValue": 72_144_371,
        // Simulated stand-ins for the lock secrets real responses carry.
        "lockData": "simulated-lock-data", "noKeyPwd": "0000000",
    });
    if let Some(map) = value.as_object_mut() {
        if detail {
            map.insert("modelNum".into(), json!(f.model_num));
            map.insert("hardwareRevision".into(), json!("1.6"));
            map.insert("firmwareRevision".into(), json!("6.0.6.210622"));
            map.insert("lockSound".into(), json!(1));
            map.insert("isFrozen".into(), json!(2));
            map.insert("adminPwd".into(), json!("simulated-admin-pwd"));
            if let Some(seconds) = f.auto_lock_time {
                map.insert("autoLockTime".into(), json!(seconds));
            }
        } else {
            map.insert("bindDate".into(), json!(1_608_383_197_000_i64));
        }
    }
    value
}

/// A record as `lockRecord/list` gives it; `whole_seconds` rounds its serverDate.
fn record_json(r: &SimRecord, whole_seconds: bool) -> Value {
    let server_date = if whole_seconds {
        (r.server_date + 500).div_euclid(1000) * 1000
    } else {
        r.server_date
    };
    json!({
        "recordId": r.record_id, "lockId": r.lock_id, "recordTypeFromLock": r.record_type_from_lock,
        "recordType": r.record_type, "success": i32::from(r.success), "username": r.username,
        "keyboardPwd": r.keyboard_pwd, "lockDate": r.lock_date, "serverDate": server_date,
        "electricQuantity": r.electric_quantity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_codes_are_refused() {
        for code in ["123456", "654321", "111111", "0123", "9876"] {
            assert_eq!(validate_format(code), Err(Fail::Code(-2032)), "{code}");
        }
        for code in ["123", "1234567890", "12a4", ""] {
            assert_eq!(validate_format(code), Err(Fail::Code(-3006)), "{code}");
        }
        for code in ["0506", "482913", "135790"] {
            assert_eq!(validate_format(code), Ok(()), "{code}");
        }
    }
}

//! Requests built from the compiled descriptors rather than from the generated types: a
//! small deterministic generator of hostile and plausible field values, a codec that
//! sends raw bytes and reads answers as `DynamicMessage`s of the method's output, and
//! the checks every answer must pass.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::bytes::BufMut;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    Value,
};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The latchkey services and their methods, read from the compiled descriptor set, so a
/// new RPC is covered without being named here.
pub fn latchkey_methods() -> Vec<MethodDescriptor> {
    let pool = DescriptorPool::decode(latchkey::pb::FILE_DESCRIPTOR_SET)
        .expect("the compiled descriptor set decodes");
    let mut methods: Vec<MethodDescriptor> = pool
        .services()
        .filter(|service| service.full_name().starts_with("latchkey."))
        .flat_map(|service| service.methods().collect::<Vec<_>>())
        .collect();
    methods.sort_by(|a, b| a.full_name().cmp(b.full_name()));
    methods
}

/// `/package.Service/Method`.
pub fn path(method: &MethodDescriptor) -> String {
    format!("/{}/{}", method.parent_service().full_name(), method.name())
}

/// SplitMix64: small, fast, and the same sequence for a seed on every platform and
/// every version of every dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What the generator draws valid-looking values from: the seeded world's ids (and ids
/// harvested from answers), page tokens seen in answers, lock ids, and the simulator's
/// account.
#[derive(Debug, Default)]
pub struct Seeds {
    /// Ids by kind: `door`, `user`, `property`, `rule`, `membership`, `code`,
    /// `account`.
    pub ids: BTreeMap<&'static str, Vec<String>>,
    /// Ids found in answers.
    pub harvested: Vec<String>,
    pub page_tokens: Vec<String>,
    pub lock_ids: Vec<i64>,
    pub sim_base_url: String,
    pub sim_client_id: String,
    pub sim_client_secret: String,
    pub sim_username: String,
    pub sim_password: String,
}

impl Seeds {
    pub fn add(&mut self, kind: &'static str, id: impl Into<String>) {
        self.ids.entry(kind).or_default().push(id.into());
    }

    fn any_id(&self, rng: &mut Rng) -> String {
        let all: Vec<&String> = self
            .ids
            .values()
            .flatten()
            .chain(self.harvested.iter())
            .collect();
        if all.is_empty() {
            return uuid_like(rng);
        }
        (*rng.pick(&all)).clone()
    }

    fn id_of(&self, kind: &str, rng: &mut Rng) -> String {
        match self.ids.get(kind) {
            Some(ids) if !ids.is_empty() && !rng.percent(15) => rng.pick(ids).clone(),
            _ => self.any_id(rng),
        }
    }

    /// Ids and page tokens found in an answer, kept for later requests.
    pub fn harvest(&mut self, answer: &DynamicMessage) {
        for (field, value) in answer.fields() {
            match value {
                Value::String(text) if !text.is_empty() => {
                    let name = field.name();
                    if name == "next_page_token" && self.page_tokens.len() < 200 {
                        self.page_tokens.push(text.clone());
                    } else if (name == "id" || name.ends_with("_id"))
                        && name != "request_id"
                        && text.len() <= 64
                        && self.harvested.len() < 500
                        && !self.harvested.contains(text)
                    {
                        self.harvested.push(text.clone());
                    }
                }
                Value::Message(inner) => self.harvest(inner),
                Value::List(items) => {
                    for item in items.iter().take(20) {
                        if let Value::Message(inner) = item {
                            self.harvest(inner);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

fn uuid_like(rng: &mut Rng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// One megabyte of text, in one of a few shapes.
fn megabyte(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => "x".repeat(1 << 20),
        1 => "é".repeat(1 << 19),
        2 => "🔐".repeat(1 << 18),
        _ => "\u{202e}ab\u{0}".repeat(1 << 18),
    }
}

const ZONES: &[&str] = &[
    "Europe/Madrid",
    "UTC",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Chatham",
];

const HOSTILE_ZONES: &[&str] = &[
    "Mars/Olympus_Mons",
    "UTC+25",
    "../../etc/passwd",
    "europe/madrid",
    "Europe/Madrid ",
    "EST5EDT,M3.2.0,M11.1.0",
    "+14:00",
    "Etc/GMT-14",
    "posix/Europe/Madrid",
];

const WORDS: &[&str] = &[
    "Front door",
    "Casa Azul",
    "Room 101",
    "staff",
    "member",
    "MANAGER",
    "guest@example.com",
    "+34 600 000 000",
    "Calle Mayor 1, Madrid",
    "monthly",
    "Annual plan",
    "booking-1",
];

/// Strings meant to break things: NUL, control characters, mixed scripts and
/// bidirectional overrides, LIKE wildcards and escapes, mangled ids and tokens, odd
/// times and numbers.
const HOSTILE: &[&str] = &[
    "",
    "\0",
    "door\0id",
    "\0\0\0\0",
    "\u{1}\u{2}\u{7}\u{8}\u{1b}[31m\u{7f}",
    "line\r\nbreak",
    "\t\u{b}\u{c}",
    "\u{85}\u{2028}\u{2029}",
    "Ωμέγα 日本語 مرحبا עברית 한국어",
    "\u{202e}gnp.exe\u{202c}",
    "\u{200b}\u{200d}\u{feff}",
    "🔐🚪👨‍👩‍👧‍👦🏳️‍🌈",
    "e\u{301}\u{302}\u{303}\u{304}",
    "\u{fffd}\u{ffff}\u{10ffff}",
    "%",
    "_",
    "\\",
    "%_\\",
    "100%",
    "a\\",
    "'",
    "''; DROP TABLE access.doors; --",
    "\" OR 1=1 --",
    "$1",
    "   ",
    "\u{a0}",
    " padded ",
    "-1",
    "0",
    "1e309",
    "NaN",
    "99999999999999999999999",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "urn:uuid:00000000-0000-0000-0000-000000000000",
    "not-a-uuid",
    "24:00",
    "25:61",
    "-01:00",
    "9:5",
    "12:00:00",
    "23:59:60",
    "true",
    "TRUE",
    "yes",
    "null",
    "{}",
    "[]",
    "AAAA",
    "eyJhbGciOiJub25lIn0.eyJ0IjoxfQ.",
    "=",
    "////",
];

const FIELD_MASK_PATHS: &[&str] = &[
    "",
    "*",
    "id",
    "version",
    "create_time",
    "update_time",
    "effective_time_zone",
    "status",
    "name,type",
    "door.name",
    "lock.account_id",
    "code_settings.check_in_time",
    "Name",
    "name ",
    "a.b.c",
    "\0",
    "user_ids\0",
    "ρόλοι",
    "tenant_id",
];

/// How plausible a request's fields are: a request mostly of valid values with a few
/// hostile ones reaches deeper than one hostile throughout.
#[derive(Debug, Clone, Copy)]
pub struct Sanity(pub u64);

/// Builds request messages. One per request; `big` is how many one-megabyte strings
/// the request may still carry.
pub struct Generator<'a> {
    pub rng: &'a mut Rng,
    pub seeds: &'a Seeds,
    pub sanity: Sanity,
    pub big: u32,
}

impl Generator<'_> {
    /// A message of `descriptor` with a random subset of its fields set.
    pub fn message(&mut self, descriptor: &MessageDescriptor, depth: u32) -> DynamicMessage {
        let mut message = DynamicMessage::new(descriptor.clone());
        match descriptor.full_name() {
            "google.protobuf.Timestamp" => return self.timestamp(descriptor),
            "google.protobuf.FieldMask" => return message,
            _ => {}
        }
        if depth > 4 {
            return message;
        }
        let fields: Vec<FieldDescriptor> = descriptor.fields().collect();
        let mask_targets: Vec<String> = fields
            .iter()
            .filter_map(|field| match field.kind() {
                Kind::Message(inner)
                    if !inner.full_name().starts_with("google.protobuf.") && !field.is_list() =>
                {
                    Some(
                        inner
                            .fields()
                            .map(|f| f.name().to_owned())
                            .collect::<Vec<_>>(),
                    )
                }
                _ => None,
            })
            .flatten()
            .collect();
        for field in &fields {
            // An absent base URL means TTLock's real cloud: always name one of ours.
            if field.is_map() || (field.name() != "base_url" && !self.rng.percent(75)) {
                continue;
            }
            let value = if field.is_list() {
                let count = match self.rng.below(20) {
                    0..=5 => 0,
                    6..=15 => 1 + self.rng.below(3),
                    16..=18 => 4 + self.rng.below(20),
                    _ => 100 + self.rng.below(900),
                };
                Value::List(
                    (0..count)
                        .map(|_| self.single(field, descriptor, depth, &mask_targets))
                        .collect(),
                )
            } else {
                self.single(field, descriptor, depth, &mask_targets)
            };
            message.set_field(field, value);
        }
        message
    }

    fn sane(&mut self) -> bool {
        self.rng.percent(self.sanity.0)
    }

    fn single(
        &mut self,
        field: &FieldDescriptor,
        parent: &MessageDescriptor,
        depth: u32,
        mask_targets: &[String],
    ) -> Value {
        let name = field.name();
        match field.kind() {
            Kind::String => Value::String(self.string(name, parent)),
            Kind::Bytes => {
                let len = self.rng.below(40);
                Value::Bytes((0..len).map(|_| self.rng.next_u64() as u8).collect())
            }
            Kind::Bool => Value::Bool(self.rng.percent(50)),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(self.int32(name)),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(self.int64(name)),
            Kind::Uint32 | Kind::Fixed32 => {
                Value::U32(
                    *self
                        .rng
                        .pick(&[0, 1, u32::MAX, u32::MAX - 1, 1 << 31, 1000]),
                )
            }
            Kind::Uint64 | Kind::Fixed64 => {
                Value::U64(*self.rng.pick(&[0, 1, u64::MAX, 1 << 63, 1 << 53]))
            }
            Kind::Float => Value::F32(*self.rng.pick(&[
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                -0.0,
                f32::MIN_POSITIVE,
                f32::MAX,
                0.5,
            ])),
            Kind::Double => Value::F64(*self.rng.pick(&[
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                -0.0,
                f64::MIN_POSITIVE,
                f64::MAX,
                0.5,
            ])),
            Kind::Enum(descriptor) => {
                let valid: Vec<i32> = descriptor.values().map(|v| v.number()).collect();
                if self.sane() {
                    Value::EnumNumber(*self.rng.pick(&valid))
                } else {
                    Value::EnumNumber(*self.rng.pick(&[
                        0,
                        -1,
                        99,
                        i32::MAX,
                        i32::MIN,
                        valid.len() as i32,
                    ]))
                }
            }
            Kind::Message(inner) => match inner.full_name() {
                "google.protobuf.FieldMask" => {
                    Value::Message(self.field_mask(&inner, mask_targets))
                }
                "latchkey.access.v1.Date" => Value::Message(self.date(&inner)),
                _ => Value::Message(self.message(&inner, depth + 1)),
            },
        }
    }

    fn string(&mut self, name: &str, parent: &MessageDescriptor) -> String {
        // Never a host that is not ours: an empty base URL means TTLock's real cloud.
        if name == "base_url" {
            let sim = self.seeds.sim_base_url.clone();
            return match self.rng.below(8) {
                0..=2 => sim,
                3 => format!("{sim}/"),
                4 => "http://127.0.0.1:9".to_owned(),
                5 => "not a url".to_owned(),
                6 => format!("{sim}\0"),
                _ => format!(
                    "http://127.0.0.1:9/{}",
                    "a".repeat(1 + self.rng.below(5000))
                ),
            };
        }
        if self.sane() {
            return self.plausible(name, parent);
        }
        match self.rng.below(20) {
            0 if self.big > 0 => {
                self.big -= 1;
                megabyte(self.rng)
            }
            1 => {
                let len = 256 + self.rng.below(8000);
                (0..len)
                    .map(|_| char::from(b'a' + (self.rng.below(26) as u8)))
                    .collect()
            }
            2 => {
                let id = self.seeds.any_id(self.rng);
                match self.rng.below(6) {
                    0 => id.to_uppercase(),
                    1 => format!("{{{id}}}"),
                    2 => id[..id.len() / 2].to_owned(),
                    3 => format!("{id} "),
                    4 => format!("{id}\0"),
                    _ => id.replace('-', ""),
                }
            }
            3 if !self.seeds.page_tokens.is_empty() => {
                let token = self.rng.pick(&self.seeds.page_tokens).clone();
                match self.rng.below(4) {
                    0 => token[..token.len() / 2].to_owned(),
                    1 => format!("{token}="),
                    2 => token.chars().rev().collect(),
                    _ => token.replace(|c: char| c.is_ascii_digit(), "9"),
                }
            }
            4 => (*self.rng.pick(HOSTILE_ZONES)).to_owned(),
            _ => (*self.rng.pick(HOSTILE)).to_owned(),
        }
    }

    fn plausible(&mut self, name: &str, parent: &MessageDescriptor) -> String {
        let message = parent.name();
        match name {
            "request_id" => {
                // A few ids again and again, to reach replays and conflicts.
                if self.rng.percent(60) {
                    format!("fuzz-{}", self.rng.below(8))
                } else {
                    format!("fuzz-{}", self.rng.next_u64())
                }
            }
            "page_token" => {
                if self.seeds.page_tokens.is_empty() || self.rng.percent(30) {
                    String::new()
                } else {
                    self.rng.pick(&self.seeds.page_tokens).clone()
                }
            }
            "time_zone" | "default_time_zone" => (*self.rng.pick(ZONES)).to_owned(),
            "start" | "end" | "check_in_time" | "check_out_time" => format!(
                "{:02}:{:02}",
                self.rng.below(24),
                *self.rng.pick(&[0, 15, 30, 59])
            ),
            "code" | "new_code" => {
                let len = 4 + self.rng.below(6);
                (0..len)
                    .map(|i| char::from(b'0' + ((i * 7 + self.rng.below(3)) % 10) as u8))
                    .collect()
            }
            "active" | "success" | "flagged" => (*self.rng.pick(&["true", "false", ""])).to_owned(),
            "client_id" => self.seeds.sim_client_id.clone(),
            "client_secret" => self.seeds.sim_client_secret.clone(),
            "username" => self.seeds.sim_username.clone(),
            "password" => self.seeds.sim_password.clone(),
            "tenant_id" => (*self.rng.pick(&["acme", "steady", "other"])).to_owned(),
            "door_id" | "door_ids" => self.seeds.id_of("door", self.rng),
            "user_id" | "user_ids" => self.seeds.id_of("user", self.rng),
            "property_id" => self.seeds.id_of("property", self.rng),
            "rule_id" => self.seeds.id_of("rule", self.rng),
            "account_id" => self.seeds.id_of("account", self.rng),
            "grantee" => {
                if self.rng.percent(50) {
                    self.seeds.id_of("user", self.rng)
                } else {
                    (*self.rng.pick(WORDS)).to_owned()
                }
            }
            "id" => {
                let kind = [
                    ("Door", "door"),
                    ("User", "user"),
                    ("Property", "property"),
                    ("Rule", "rule"),
                    ("Membership", "membership"),
                    ("Code", "code"),
                    ("Account", "account"),
                ]
                .iter()
                .find(|(part, _)| message.contains(part))
                .map_or("any", |(_, kind)| kind);
                self.seeds.id_of(kind, self.rng)
            }
            _ if name.ends_with("_id") || name.ends_with("_ids") => self.seeds.any_id(self.rng),
            _ => (*self.rng.pick(WORDS)).to_owned(),
        }
    }

    fn int32(&mut self, name: &str) -> i32 {
        if self.sane() {
            let small = self.rng.below(10) as i32;
            return match name {
                "page_size" => *self.rng.pick(&[0, 1, 2, 10, 50, 1000]),
                "day_of_week" => small % 7,
                "year" => 2026 + small % 3,
                "month" => 1 + small,
                "day" => 1 + small * 3,
                "code_length" | "default_code_length" => 4 + small % 6,
                "window_minutes" | "cleaning_minutes" => 5 + small * 30,
                _ => small,
            };
        }
        *self.rng.pick(&[
            0,
            -1,
            1,
            i32::MIN,
            i32::MAX,
            i32::MIN + 1,
            i32::MAX - 1,
            7,
            13,
            32,
            366,
            10_000,
            1001,
        ])
    }

    fn int64(&mut self, name: &str) -> i64 {
        if self.sane() {
            return match name {
                "lock_id" if !self.seeds.lock_ids.is_empty() => {
                    *self.rng.pick(&self.seeds.lock_ids)
                }
                _ => self.rng.below(50) as i64,
            };
        }
        *self.rng.pick(&[
            0,
            -1,
            1,
            i64::MIN,
            i64::MAX,
            i64::MIN + 1,
            1 << 53,
            -(1 << 53),
            253_402_300_800,
            i64::from(i32::MAX) + 1,
        ])
    }

    fn timestamp(&mut self, descriptor: &MessageDescriptor) -> DynamicMessage {
        let now = chrono::Utc::now().timestamp();
        let (seconds, nanos) = if self.sane() {
            let days = self.rng.below(120) as i64 - 60;
            (now + days * 86_400 + self.rng.below(86_400) as i64, 0)
        } else {
            let seconds = *self.rng.pick(&[
                // Year 10000 and past; the last valid instant; the first.
                253_402_300_800,
                253_402_300_799,
                -62_135_596_800,
                -62_135_596_801,
                i64::MAX,
                i64::MIN,
                0,
                -1,
                now,
            ]);
            let nanos = *self
                .rng
                .pick(&[0, -1, 999_999_999, 1_000_000_000, i32::MAX, i32::MIN]);
            (seconds, nanos)
        };
        let mut message = DynamicMessage::new(descriptor.clone());
        message.set_field_by_name("seconds", Value::I64(seconds));
        message.set_field_by_name("nanos", Value::I32(nanos));
        message
    }

    fn field_mask(&mut self, descriptor: &MessageDescriptor, targets: &[String]) -> DynamicMessage {
        let count = self.rng.below(5);
        let paths: Vec<Value> = (0..count)
            .map(|_| {
                let path = if self.sane() && !targets.is_empty() {
                    self.rng.pick(targets).clone()
                } else if self.big > 0 && self.rng.percent(3) {
                    self.big -= 1;
                    megabyte(self.rng)
                } else {
                    (*self.rng.pick(FIELD_MASK_PATHS)).to_owned()
                };
                Value::String(path)
            })
            .collect();
        let mut message = DynamicMessage::new(descriptor.clone());
        message.set_field_by_name("paths", Value::List(paths));
        message
    }

    fn date(&mut self, descriptor: &MessageDescriptor) -> DynamicMessage {
        let (year, month, day) = if self.sane() {
            let day = chrono::Utc::now().date_naive()
                + chrono::Duration::days(self.rng.below(60) as i64 - 10);
            use chrono::Datelike;
            (day.year(), day.month() as i32, day.day() as i32)
        } else {
            *self.rng.pick(&[
                (2026, 2, 30),
                (2026, 13, 1),
                (2026, 0, 0),
                (0, 1, 1),
                (-1, 1, 1),
                (10_000, 1, 1),
                (i32::MAX, i32::MAX, i32::MAX),
                (i32::MIN, 1, 1),
                (2027, 2, 29),
                (2028, 2, 29),
            ])
        };
        let mut message = DynamicMessage::new(descriptor.clone());
        message.set_field_by_name("year", Value::I32(year));
        message.set_field_by_name("month", Value::I32(month));
        message.set_field_by_name("day", Value::I32(day));
        message
    }
}

/// A request in a form short enough to print: long strings cut, lists shortened.
pub fn compact(message: &DynamicMessage) -> String {
    let mut out = String::from("{");
    for (i, (field, value)) in message.fields().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(field.name());
        out.push_str(": ");
        compact_value(value, &mut out);
    }
    out.push('}');
    out
}

fn compact_value(value: &Value, out: &mut String) {
    match value {
        Value::String(text) => out.push_str(&compact_str(text)),
        Value::Bytes(bytes) => out.push_str(&format!("<{} bytes>", bytes.len())),
        Value::Message(message) => out.push_str(&compact(message)),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().take(3).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                compact_value(item, out);
            }
            if items.len() > 3 {
                out.push_str(&format!(", …{} in all", items.len()));
            }
            out.push(']');
        }
        other => out.push_str(&format!("{other:?}")),
    }
}

pub fn compact_str(text: &str) -> String {
    let chars = text.chars().count();
    if chars <= 40 {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(24).collect();
        format!("{head:?}…<{chars} chars, {} bytes>", text.len())
    }
}

/// Sends pre-encoded request bodies (valid or not) and reads answers as messages of the
/// method's output type.
#[derive(Debug, Clone)]
pub struct RawCodec {
    pub output: MessageDescriptor,
}

/// The message of a [`Status`] the codec makes when an answer does not decode.
pub const UNDECODABLE_ANSWER: &str = "fuzz client: the answer does not decode";

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = DynamicMessage;
    type Encoder = RawEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder(self.output.clone())
    }
}

#[derive(Debug)]
pub struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

#[derive(Debug)]
pub struct DynamicDecoder(MessageDescriptor);

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|e| Status::data_loss(format!("{UNDECODABLE_ANSWER}: {e}")))
    }
}

/// Calls `method` with `body`; a streaming method's first few answers are read (for at
/// most `stream_wait`, since a live stream does not end).
pub async fn call(
    channel: &Channel,
    method: &MethodDescriptor,
    body: Vec<u8>,
    token: &str,
    stream_wait: Duration,
) -> Result<Vec<DynamicMessage>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(64 << 20);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("fuzz client: channel not ready: {e}")))?;
    let path: tonic::codegen::http::uri::PathAndQuery =
        path(method).parse().expect("a method path");
    let mut request = tonic::Request::new(body);
    request
        .metadata_mut()
        .insert("authorization", latchkey::testkit::bearer(token));
    let codec = RawCodec {
        output: method.output(),
    };
    if !method.is_server_streaming() {
        return grpc
            .unary(request, path, codec)
            .await
            .map(|answer| vec![answer.into_inner()]);
    }
    let mut stream = grpc
        .server_streaming(request, path, codec)
        .await?
        .into_inner();
    let mut answers = Vec::new();
    let read = async {
        while answers.len() < 3 {
            match stream.message().await? {
                Some(answer) => answers.push(answer),
                None => break,
            }
        }
        Ok::<_, Status>(())
    };
    match tokio::time::timeout(stream_wait, read).await {
        Ok(Err(status)) => Err(status),
        Ok(Ok(())) | Err(_) => Ok(answers),
    }
}

/// The size of a status's message and `grpc-status-details-bin` as sent: the message
/// percent-encoded, the details in base64.
pub fn trailer_size(status: &Status) -> usize {
    let message: usize = status
        .message()
        .bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                1
            } else {
                3
            }
        })
        .sum();
    message + status.details().len().div_ceil(3) * 4
}

/// What clients accept in trailers by default, with room for the other headers.
pub const TRAILER_LIMIT: usize = 8 * 1024;

/// A status in a line: code, reason, message (shortened).
pub fn describe(status: &Status) -> String {
    use tonic_types::StatusExt;
    let reason = status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default();
    let fields = status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let message: String = status.message().chars().take(200).collect();
    let message = if message.len() < status.message().len() {
        format!("{message:?}…<{} bytes>", status.message().len())
    } else {
        format!("{message:?}")
    };
    format!("{:?} {reason} {message} fields {fields:?}", status.code())
}

/// Whether an answer is one no request may ever get.
pub fn is_internal(code: Code) -> bool {
    matches!(code, Code::Internal | Code::Unknown)
}

/// Failures gathered over a run, grouped so that a defect hit a thousand times is one
/// entry with a count, the first status and the first request.
#[derive(Debug, Default)]
pub struct Failures(Mutex<BTreeMap<(String, String, String), Group>>);

#[derive(Debug)]
struct Group {
    count: usize,
    status: String,
    request: String,
}

impl Failures {
    /// Records a failure of `method`; failures of one method and `kind` are grouped by
    /// their status unless `group` says otherwise.
    pub fn add(
        &self,
        method: &str,
        kind: &str,
        group: Option<&str>,
        status: String,
        request: String,
    ) {
        let key: String = group.map_or_else(|| status.chars().take(160).collect(), str::to_owned);
        let mut groups = self.0.lock().unwrap_or_else(|e| e.into_inner());
        groups
            .entry((method.to_owned(), kind.to_owned(), key))
            .or_insert(Group {
                count: 0,
                status,
                request,
            })
            .count += 1;
    }

    pub fn count(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|group| group.count)
            .sum()
    }

    pub fn report(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((method, kind, _), group)| {
                format!(
                    "{method} [{kind}] x{}: {}\n    first request: {}",
                    group.count, group.status, group.request
                )
            })
            .collect()
    }
}

/// Panics anywhere in the process but in the tests' own code (their assertions),
/// recorded by a hook installed once (the default hook still prints them): a handler
/// that panics may reach its caller as a reset stream with any code, or as nothing.
pub fn panics() -> Arc<Mutex<Vec<String>>> {
    static PANICS: std::sync::OnceLock<Arc<Mutex<Vec<String>>>> = std::sync::OnceLock::new();
    PANICS
        .get_or_init(|| {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let recorded = seen.clone();
            let default = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if info
                    .location()
                    .is_some_and(|at| at.file().starts_with("tests/"))
                {
                    return default(info);
                }
                let thread = std::thread::current()
                    .name()
                    .unwrap_or("unnamed")
                    .to_owned();
                recorded
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("thread {thread}: {info}"));
                default(info);
            }));
            seen
        })
        .clone()
}

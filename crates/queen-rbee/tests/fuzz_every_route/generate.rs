//! The seeded generator: each request from one route of the target, bent at random.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, Url};
use serde_json::{Value, json};

use super::Target;
use super::routes::{self, QueryKind, Route};

/// Over every body limit the daemons have (axum's default is 2 MB).
const OVERSIZED: usize = 3 << 20;
/// The daemons' request body limit (axum's default).
pub const BODY_LIMIT: usize = 2 << 20;
const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::HEAD,
    Method::OPTIONS,
];
const VALID_IDS: &[&str] = &[
    "3f2c0000-0000-4000-8000-000000000000",
    "job-1",
    routes::WORKER_ID,
    "a",
];
const NASTY: &[&str] = &[
    "..",
    ".",
    "../",
    "../../../../etc/passwd",
    "%00",
    "%2e%2e",
    "%2F",
    "%252e",
    "%",
    "%zz",
    "-rf",
    "--help",
    "*",
    " ",
    "\u{0}",
    "\t",
    "\r\n",
    "ü",
    "😀",
    "日本語",
    "\u{202e}",
    "\u{feff}",
    "\\",
    "$(id)",
    "`id`",
    ";",
    "'",
    "\"",
    "<script>",
    "{id}",
    "{job_id}",
    ":",
    "@",
    "~",
    "null",
    "NaN",
    "-1",
    "0",
    "18446744073709551616",
    "localhost",
    "hf:a/b",
    "file:/etc/passwd",
];
/// Not JSON, each for its own reason.
const BROKEN: &[&str] = &[
    "{",
    "}",
    "{\"a\":}",
    "{'a': 1}",
    "{\"a\": 1,}",
    "[1, 2",
    "{\"max_tokens\": 1e999}",
    "{\"temperature\": NaN}",
    "{\"top_p\": Infinity}",
    "nul",
    "\u{feff}{}",
    "{\"prompt\": \"\\ud800\"}",
    "{\"prompt\": \"\u{1}\"}",
    "{}{}",
    "{\"a\" 1}",
    "{\"a\":1}}",
    "\"unterminated",
];
/// Appended to valid JSON: never whitespace, so the whole is never valid.
const SUFFIXES: &[&str] = &["x", ",", "}", "]", "{}", "\u{0}", "null"];
const SHAPES: &[&str] = &[
    "[]",
    "[1, 2, 3]",
    "\"text\"",
    "42",
    "-0",
    "true",
    "null",
    "{}",
    "{\"\": \"\"}",
    "[{}]",
    "[[]]",
    "[null, \"Hi\"]",
    "{\"error\": {\"code\": \"INTERNAL\", \"message\": \"x\"}}",
];
/// Field names no request struct knows (they all refuse unknown fields).
const UNKNOWN_FIELDS: &[&str] = &["promt", "__proto__", "fuzz", "", "MAX_TOKENS", "model_ref "];
const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("text/plain"),
    Some("application/json; charset=utf-8"),
    Some("application/x-www-form-urlencoded"),
    Some("multipart/form-data; boundary=fuzz"),
    Some("APPLICATION/JSON"),
    Some("application/vnd.rbee+json"),
    Some("application/json, text/html"),
    Some(""),
];
const BOOLS: &[&str] = &["true", "false", "1", "yes", "TRUE", ""];
const NODES: &[&str] = &["localhost", "fuzz-node", "", "-rf", "a.b_c-d"];
const SOURCES: &[&str] = &[
    "hive",
    "worker:worker-0a1b2c3d4e5f",
    "worker:",
    "worker:a b",
    "queen",
];
const DOWNLOAD_IDS: &[&str] = &[
    routes::DOWNLOAD_REF,
    "file:/models/fuzz.gguf",
    "hf:a/b",
    "llama3",
    "",
];

/// One generated request, and how it was made.
pub struct FuzzRequest {
    pub index: usize,
    pub method: Method,
    pub url: Url,
    pub authorization: Option<Vec<u8>>,
    pub content_type: Option<&'static str>,
    pub body: Option<Vec<u8>>,
    /// The route it was made from, then each choice that bent it.
    pub notes: Vec<String>,
}

impl FuzzRequest {
    pub fn build(&self, client: &reqwest::Client) -> reqwest::Result<reqwest::Request> {
        let mut builder = client.request(self.method.clone(), self.url.clone());
        if let Some(value) = self.authorization.as_deref() {
            let value = HeaderValue::from_bytes(value).expect("generated header bytes are valid");
            builder = builder.header(AUTHORIZATION, value);
        }
        if let Some(content_type) = self.content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        if let Some(body) = &self.body {
            builder = builder.body(body.clone());
        }
        builder.build()
    }

    pub fn describe(&self) -> String {
        let auth = self
            .authorization
            .as_deref()
            .map_or_else(|| "none".to_owned(), snippet);
        let body = self
            .body
            .as_deref()
            .map_or_else(|| "none".to_owned(), snippet);
        format!(
            "#{} {} {}\n      authorization: {auth}; content-type: {:?}\n      made as: {}\n      body: {body}\n",
            self.index,
            self.method,
            snippet(self.url.as_str().as_bytes()),
            self.content_type,
            self.notes.join("; ")
        )
    }
}

/// At most 240 bytes of `bytes`, as text, with the full length when cut.
pub fn snippet(bytes: &[u8]) -> String {
    const SHOWN: usize = 240;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)]);
    if bytes.len() > SHOWN {
        format!("{text:?}… ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

pub struct Generator<'a> {
    rng: StdRng,
    target: &'a Target,
}

impl<'a> Generator<'a> {
    pub fn new(seed: u64, target: &'a Target) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            target,
        }
    }

    pub fn request(&mut self, index: usize) -> FuzzRequest {
        let target = self.target;
        let route = target
            .routes
            .choose(&mut self.rng)
            .expect("every daemon has routes");
        let mut notes = vec![format!("from {} {}", route.method, route.path)];
        let method = self.method(route);
        let url = self.url(route, &mut notes);
        let guard = if route.guarded {
            Some(route)
        } else {
            routes::guarded_at(&target.routes, url.path())
        };
        let authorization = self.authorization(&mut notes);
        let content_type = self.content_type();
        let body = self.body(route, guard, &mut notes);
        FuzzRequest {
            index,
            method,
            url,
            authorization,
            content_type,
            body,
            notes,
        }
    }

    fn method(&mut self, route: &Route) -> Method {
        if self.rng.random_bool(0.6) {
            route.method.clone()
        } else {
            METHODS.choose(&mut self.rng).expect("methods").clone()
        }
    }

    fn url(&mut self, route: &Route, notes: &mut Vec<String>) -> Url {
        let mut url = Url::parse(&self.target.base).expect("the daemon's URL");
        let path = self.path(route, notes);
        url.set_path(&path);
        self.query(&mut url, route.query, notes);
        if routes::excluded(url.path()) {
            url.set_path("/fuzz/not-a-shutdown-route");
            notes.push("path replaced: it named a shutdown route".to_owned());
        }
        url
    }

    /// The route's path, or (one time in three) a mangled one.
    fn path(&mut self, route: &Route, notes: &mut Vec<String>) -> String {
        let valid = self.fill(route.path, false);
        if self.rng.random_bool(0.65) {
            return valid;
        }
        let (path, how) = match self.rng.random_range(0..7) {
            0 if route.path.contains('{') => {
                (self.fill(route.path, true), "garbage path parameter")
            }
            0 | 1 => (format!("{valid}/{}", self.garbage()), "an extra segment"),
            2 => (self.replace_segment(&valid), "a segment replaced"),
            3 => (format!("{valid}/"), "a trailing slash"),
            4 => (valid.replacen('/', "//", 2), "doubled slashes"),
            5 => (valid.to_uppercase(), "upper case"),
            _ => {
                let segments = self.rng.random_range(1..4);
                (
                    (0..segments)
                        .map(|_| format!("/{}", self.garbage()))
                        .collect(),
                    "a random path",
                )
            }
        };
        notes.push(how.to_owned());
        path
    }

    /// `template` with each `{param}` replaced by a valid-looking id, or by garbage.
    fn fill(&mut self, template: &str, garbage: bool) -> String {
        template
            .split('/')
            .map(|s| match (s.starts_with('{'), garbage) {
                (false, _) => s.to_owned(),
                (true, true) => self.garbage(),
                (true, false) => VALID_IDS.choose(&mut self.rng).expect("ids").to_string(),
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    fn replace_segment(&mut self, path: &str) -> String {
        let mut segments: Vec<String> = path.split('/').map(str::to_owned).collect();
        // Segment 0 is the empty one before the leading slash.
        let i = self.rng.random_range(1..segments.len().max(2));
        if i < segments.len() {
            segments[i] = self.garbage();
        }
        segments.join("/")
    }

    /// A nasty path segment or value: traversal, NULs, flags, unicode, very long.
    fn garbage(&mut self) -> String {
        match self.rng.random_range(0..6) {
            0..=2 => NASTY.choose(&mut self.rng).expect("nasty").to_string(),
            3 => {
                let c = *['A', '.', '%', 'é', '/']
                    .choose(&mut self.rng)
                    .expect("chars");
                std::iter::repeat_n(c, self.rng.random_range(256..8192)).collect()
            }
            4 => {
                let len = self.rng.random_range(1..40);
                (0..len)
                    .map(|_| char::from(self.rng.random_range(0x21u8..0x7f)))
                    .collect()
            }
            _ => {
                let len = self.rng.random_range(1..20);
                (0..len).map(|_| self.rng.random::<char>()).collect()
            }
        }
    }

    /// The route's own parameters with good and bad values, or a garbage query.
    fn query(&mut self, url: &mut Url, kind: QueryKind, notes: &mut Vec<String>) {
        if kind != QueryKind::None && self.rng.random_bool(0.7) {
            let pairs = self.query_pairs(kind);
            if !pairs.is_empty() {
                let mut query = url.query_pairs_mut();
                for (name, value) in &pairs {
                    query.append_pair(name, value);
                }
            }
            return;
        }
        if self.rng.random_bool(0.3) {
            let raw = self.garbage_query();
            url.set_query(Some(&raw));
            notes.push("a garbage query".to_owned());
        }
    }

    fn query_pairs(&mut self, kind: QueryKind) -> Vec<(&'static str, String)> {
        let fields: Vec<(&'static str, &'static [&'static str])> = match kind {
            QueryKind::None => Vec::new(),
            QueryKind::Download => vec![("id", DOWNLOAD_IDS)],
            QueryKind::HiveLogs => vec![("follow", BOOLS), ("source", SOURCES)],
            QueryKind::Node => vec![("node", NODES)],
            QueryKind::NodeLogs => vec![("node", NODES), ("follow", BOOLS)],
            QueryKind::ModelRef => vec![("ref", DOWNLOAD_IDS)],
            QueryKind::ModelShow => vec![("model", DOWNLOAD_IDS), ("node", NODES)],
        };
        let mut pairs = Vec::new();
        for (name, values) in fields {
            if self.rng.random_bool(0.15) {
                continue; // left out
            }
            let value = if self.rng.random_bool(0.8) {
                values.choose(&mut self.rng).expect("values").to_string()
            } else {
                self.garbage()
            };
            pairs.push((name, value));
        }
        pairs
    }

    fn garbage_query(&mut self) -> String {
        match self.rng.random_range(0..6) {
            0 => "=".to_owned(),
            1 => "&&&=&".to_owned(),
            2 => {
                let (name, value) = (self.garbage(), self.garbage());
                format!("{name}={value}")
            }
            3 => "id=%ZZ&id=1&id&node=%00".to_owned(),
            4 => format!("follow={}", "t".repeat(self.rng.random_range(100..6000))),
            _ => "a[b]=c&a[]=d&node[]=x".to_owned(),
        }
    }

    /// The `Authorization` header: usually the right key, else a wrong one or a wrong form.
    fn authorization(&mut self, notes: &mut Vec<String>) -> Option<Vec<u8>> {
        let key = self.target.key;
        let (value, how) = match self.rng.random_range(0..20) {
            0..=10 => (Some(format!("Bearer {key}").into_bytes()), "the right key"),
            11 => (None, "no key"),
            12 => (Some(b"Bearer wrong-key".to_vec()), "a wrong key"),
            13 => (Some(b"Bearer ".to_vec()), "an empty bearer"),
            14 => (
                Some(format!("bearer {key}").into_bytes()),
                "lower-case bearer",
            ),
            15 => (
                Some(format!("Basic {key}").into_bytes()),
                "the Basic scheme",
            ),
            16 => (
                Some(format!("Bearer  {key} ").into_bytes()),
                "the key padded",
            ),
            17 => (
                Some(format!("Bearer {key}{key}").into_bytes()),
                "the key twice",
            ),
            18 => {
                let huge = "k".repeat(self.rng.random_range(1000..16000));
                (Some(format!("Bearer {huge}").into_bytes()), "a huge key")
            }
            _ => (Some(self.header_bytes()), "garbage"),
        };
        notes.push(format!("auth: {how}"));
        value
    }

    /// Bytes a header value may hold (visible ASCII, space, and bytes above 0x7f).
    fn header_bytes(&mut self) -> Vec<u8> {
        let len = self.rng.random_range(1..64);
        (0..len)
            .map(|_| match self.rng.random_range(0x20u8..=0xff) {
                0x7f => b'x',
                b => b,
            })
            .collect()
    }

    fn content_type(&mut self) -> Option<&'static str> {
        if self.rng.random_bool(0.6) {
            Some("application/json")
        } else {
            *CONTENT_TYPES.choose(&mut self.rng).expect("content types")
        }
    }

    /// None, empty, not JSON, the wrong shape, the route's body mutated, or oversized;
    /// made invalid when `guard` is a guarded route.
    fn body(
        &mut self,
        route: &Route,
        guard: Option<&Route>,
        notes: &mut Vec<String>,
    ) -> Option<Vec<u8>> {
        let base = route.body.clone().unwrap_or_else(|| json!({}));
        let mut value = match self.rng.random_range(0..100) {
            0..15 => {
                notes.push("no body".to_owned());
                return None;
            }
            15..20 => {
                notes.push("an empty body".to_owned());
                return Some(Vec::new());
            }
            20..40 => return Some(self.invalid_json(&base, notes)),
            40..52 => self.wrong_shape(notes),
            52..94 => self.mutated(base, notes),
            94..98 => {
                notes.push("the valid body".to_owned());
                base
            }
            98 => {
                notes.push("a 3 MB JSON string".to_owned());
                json!({"prompt": "a".repeat(OVERSIZED)})
            }
            _ => {
                notes.push("3 MB that are not JSON".to_owned());
                return Some(vec![b'x'; OVERSIZED]);
            }
        };
        if let Some(guard) = guard {
            self.poison(&mut value, guard.poison, notes);
        }
        Some(serde_json::to_vec(&value).expect("a JSON value serializes"))
    }

    /// Bytes that are not JSON (so no guard is needed).
    fn invalid_json(&mut self, base: &Value, notes: &mut Vec<String>) -> Vec<u8> {
        let text = serde_json::to_vec(base).expect("a JSON value serializes");
        let (bytes, how) = match self.rng.random_range(0..5) {
            0 => {
                let cut = self.rng.random_range(0..text.len());
                (text[..cut].to_vec(), "truncated JSON")
            }
            1 => {
                let len = self.rng.random_range(0..512);
                let mut bytes = vec![0xffu8];
                bytes.extend((0..len).map(|_| self.rng.random::<u8>()));
                (bytes, "random bytes")
            }
            2 => (
                BROKEN
                    .choose(&mut self.rng)
                    .expect("broken")
                    .as_bytes()
                    .to_vec(),
                "broken JSON",
            ),
            3 => (
                "[".repeat(self.rng.random_range(129..100_000)).into_bytes(),
                "deep, unclosed nesting",
            ),
            _ => {
                let mut bytes = text;
                bytes.extend_from_slice(
                    SUFFIXES.choose(&mut self.rng).expect("suffixes").as_bytes(),
                );
                (bytes, "trailing garbage")
            }
        };
        notes.push(how.to_owned());
        bytes
    }

    fn wrong_shape(&mut self, notes: &mut Vec<String>) -> Value {
        let text = SHAPES.choose(&mut self.rng).expect("shapes");
        notes.push(format!("the wrong shape {text}"));
        serde_json::from_str(text).expect("the shapes are JSON")
    }

    /// `value` with one to three fields dropped, added, or given a nasty value.
    fn mutated(&mut self, mut value: Value, notes: &mut Vec<String>) -> Value {
        if let Value::Object(map) = &mut value {
            for _ in 0..self.rng.random_range(1..=3) {
                let keys: Vec<String> = map.keys().cloned().collect();
                let key = keys.choose(&mut self.rng).cloned();
                match (self.rng.random_range(0..10), key) {
                    (0, Some(key)) => {
                        map.remove(&key);
                        notes.push(format!("dropped `{key}`"));
                    }
                    (1, _) | (_, None) => {
                        let name = UNKNOWN_FIELDS
                            .choose(&mut self.rng)
                            .expect("names")
                            .to_string();
                        let (nasty, what) = self.nasty_value();
                        notes.push(format!("unknown field `{name}` = {what}"));
                        map.insert(name, nasty);
                    }
                    (_, Some(key)) => {
                        let (nasty, what) = self.nasty_value();
                        notes.push(format!("`{key}` = {what}"));
                        map.insert(key, nasty);
                    }
                }
            }
        }
        value
    }

    /// A value no field expects: out of range, the wrong type, huge, or deeply nested.
    fn nasty_value(&mut self) -> (Value, String) {
        match self.rng.random_range(0..14) {
            0 => (json!(u64::MAX), "u64::MAX".to_owned()),
            1 => (json!(1e300), "1e300".to_owned()),
            2 => (json!(i64::MIN), "i64::MIN".to_owned()),
            3 => (json!(-1), "-1".to_owned()),
            4 => (json!(0.5), "0.5".to_owned()),
            5 => {
                let s = *["NaN", "Infinity", "-Infinity", "1e999"]
                    .choose(&mut self.rng)
                    .expect("s");
                (json!(s), format!("{s:?} as a string"))
            }
            6 => {
                let n = self.rng.random_range(1_000..100_000);
                (json!("x".repeat(n)), format!("a {n}-character string"))
            }
            7 => {
                let depth = self.rng.random_range(50..400);
                (nested(depth), format!("{depth} levels of nesting"))
            }
            8 => (Value::Null, "null".to_owned()),
            9 => (json!(true), "true".to_owned()),
            10 => (
                json!({"nested": {"deeper": [1, 2]}}),
                "an object".to_owned(),
            ),
            11 => (json!([1, "two", null]), "a mixed list".to_owned()),
            12 => (json!(""), "an empty string".to_owned()),
            _ => {
                let garbage = self.garbage();
                (json!(garbage), "a garbage string".to_owned())
            }
        }
    }

    /// Makes a body bound for a guarded route invalid, whatever was done to it before:
    /// an unknown field or a field of the wrong type for an object, an object as the
    /// first (positional) field for a list. A scalar is never a request.
    fn poison(&mut self, value: &mut Value, fields: &[&str], notes: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if !fields.is_empty() && self.rng.random_bool(0.5) {
                    let field = *fields.choose(&mut self.rng).expect("fields");
                    let bad = match self.rng.random_range(0..4) {
                        0 => json!(7),
                        1 => json!(false),
                        2 => json!({"x": 1}),
                        _ => json!(-2.5),
                    };
                    notes.push(format!("made invalid: `{field}` = {bad}"));
                    map.insert(field.to_owned(), bad);
                } else {
                    let name = *UNKNOWN_FIELDS.choose(&mut self.rng).expect("names");
                    notes.push(format!("made invalid: unknown field `{name}`"));
                    map.insert(name.to_owned(), json!(1));
                }
            }
            Value::Array(items) => {
                items.insert(0, json!({}));
                notes.push("made invalid: an object as the first element".to_owned());
            }
            _ => {}
        }
    }
}

fn nested(depth: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..depth {
        value = json!([value]);
    }
    value
}

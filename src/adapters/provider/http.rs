//! What both HTTP providers share: the client, reading a bounded body, classifying status
//! codes, and reading how long a 429 asks us to wait.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::core::calendar::DailyReset;
use crate::core::provider::{FailureClass, ProviderFailure, QuotaScope};

/// Replies larger than this are not read further: no translation reply comes near it.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// How long an unused connection stays in the client's pool: longer than any warm interval
/// (`[connections] warm_every_secs`), so the warming, not reqwest's 90 s default, decides how
/// long a connection lives (the server may still close it first).
pub const POOL_IDLE: Duration = Duration::from_secs(3600);

/// Connect and total timeouts for one provider. reqwest has no default timeout.
///
/// Connections are kept for reuse (warm connections, `core::warm`): the pool keeps them for
/// [`POOL_IDLE`], at most two per host (a line and a warm beside it; more would only be open
/// sockets), and TCP keep-alive probes every 30 s keep a NAT's or firewall's state of an idle
/// connection and notice one that died.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(2)
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(concat!("yaku/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A reply read off the wire: status, headers and at most `MAX_BODY_BYTES` of body.
pub struct RawReply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RawReply {
    /// Removes `secret` from the body before anything reads it: an error body may echo the
    /// request, and later shortening could cut an echoed key where whole-key redaction misses it.
    pub fn redact(&mut self, secret: Option<&str>) {
        let Some(secret) = secret.filter(|s| s.len() >= 4) else {
            return;
        };
        if key_spans(&self.body, secret).is_empty() {
            return;
        }
        // A JSON body is redacted string by string, so it stays JSON (a fragment may also
        // match digits of a number, which carry no key).
        if let Ok(mut value) = serde_json::from_slice::<Value>(&self.body) {
            redact_strings(&mut value, secret);
            if let Ok(body) = serde_json::to_vec(&value) {
                self.body = body;
                return;
            }
        }
        let text = redact(&String::from_utf8_lossy(&self.body), Some(secret));
        self.body = text.into_bytes();
    }
}

/// Redacts every string (and object key) in `value`.
fn redact_strings(value: &mut Value, secret: &str) {
    match value {
        Value::String(s) => *s = redact(s, Some(secret)),
        Value::Array(items) => items.iter_mut().for_each(|v| redact_strings(v, secret)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                redact_strings(&mut v, secret);
                map.insert(redact(&k, Some(secret)), v);
            }
        }
        _ => {}
    }
}

/// Sends the request and reads the whole (bounded) reply. Transport failures are `Transient`.
pub async fn send(
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<RawReply, ProviderFailure> {
    let mut resp = req
        .send()
        .await
        .map_err(|e| transport_failure(&e, timeout))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(ProviderFailure::new(
                        FailureClass::Transient,
                        format!(
                            "HTTP {status}: reply larger than {} MiB, not read",
                            MAX_BODY_BYTES / (1024 * 1024)
                        ),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                let mut f = transport_failure(&e, timeout);
                f.detail = format!("HTTP {status}: reply cut off ({})", f.detail);
                return Err(f);
            }
        }
    }
    Ok(RawReply {
        status,
        headers,
        body,
    })
}

/// Sends a warming request (a free `GET`, never a translation) and reads its (bounded) reply so
/// the connection goes back to the pool. Any HTTP status is a warm connection; only a transport
/// failure is an error, in our own words.
pub async fn warm(req: reqwest::RequestBuilder, timeout: Duration) -> Result<(), ProviderFailure> {
    send(req, timeout).await.map(drop)
}

/// A header value carrying a key, marked sensitive so it never shows in `Debug` output.
pub fn key_header(value: &str) -> Result<reqwest::header::HeaderValue, ProviderFailure> {
    let mut v = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        ProviderFailure::new(
            FailureClass::Unauthorized,
            "the API key holds characters no HTTP header can carry",
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// How a provider reads its 429s.
pub type RateLimitReader = fn(&RawReply, &Value, SystemTime) -> ProviderFailure;

/// One exchange, the same for every wire format: send, remove the key from the body, classify
/// a non-200 reply, parse a 200 reply's JSON (a 200 that is not JSON was cut short: transient).
pub async fn exchange(
    req: reqwest::RequestBuilder,
    timeout: Duration,
    api_key: Option<&str>,
    rate_limit: RateLimitReader,
) -> Result<Value, ProviderFailure> {
    exchange_with_headers(req, timeout, api_key, rate_limit)
        .await
        .map(|(json, _)| json)
}

/// [`exchange`], also returning the 200 reply's headers (where a provider reports its budget).
pub async fn exchange_with_headers(
    req: reqwest::RequestBuilder,
    timeout: Duration,
    api_key: Option<&str>,
    rate_limit: RateLimitReader,
) -> Result<(Value, HeaderMap), ProviderFailure> {
    let mut reply = send(req, timeout).await?;
    reply.redact(api_key);
    if reply.status != 200 {
        return Err(classify_error(&reply, |r, j| {
            rate_limit(r, j, SystemTime::now())
        }));
    }
    let json = serde_json::from_slice(&reply.body).map_err(|_| {
        ProviderFailure::new(
            FailureClass::Transient,
            "HTTP 200 but the reply is not valid JSON (cut short?)",
        )
    })?;
    Ok((json, reply.headers))
}

/// Runs a provider call and removes the key from any failure's text.
pub async fn without_key<T>(
    api_key: Option<&str>,
    call: impl std::future::Future<Output = Result<T, ProviderFailure>>,
) -> Result<T, ProviderFailure> {
    call.await.map_err(|mut f| {
        f.detail = redact(&f.detail, api_key);
        f
    })
}

/// Our own words for a transport error: reqwest's own text carries the URL.
fn transport_failure(e: &reqwest::Error, timeout: Duration) -> ProviderFailure {
    let detail = if e.is_timeout() {
        format!("no reply within {} s", timeout.as_secs_f64())
    } else if e.is_connect() {
        "could not connect".to_string()
    } else if e.is_body() || e.is_decode() {
        "connection closed in the middle of the reply".to_string()
    } else {
        "connection failed".to_string()
    };
    ProviderFailure::new(FailureClass::Transient, detail)
}

/// Classifies a non-200 reply by its status and error body (both providers' formats).
/// `rate_limit` works out the wait and scope of a 429 for the provider's format.
pub fn classify_error(
    reply: &RawReply,
    rate_limit: impl FnOnce(&RawReply, &Value) -> ProviderFailure,
) -> ProviderFailure {
    let json: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let status = reply.status;
    let message = error_message(&json).unwrap_or_else(|| body_excerpt(&reply.body));
    let detail = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {message}")
    };
    let code = json
        .pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or("");
    let reasons = error_reasons(&json);
    let lower = message.to_ascii_lowercase();
    let class = match status {
        429 => return rate_limit(reply, &json),
        401 | 403 => FailureClass::Unauthorized,
        400 if reasons.iter().any(|r| r == "API_KEY_INVALID") => FailureClass::Unauthorized,
        400 | 404 if code == "model_decommissioned" || code == "model_not_found" => {
            FailureClass::ModelUnavailable
        }
        404 => FailureClass::ModelUnavailable,
        400 if lower.contains("no longer available") || lower.contains("decommissioned") => {
            FailureClass::ModelUnavailable
        }
        498 | 500..=599 => FailureClass::Transient,
        400..=499 => FailureClass::BadRequest,
        // 1xx/3xx arriving as a final status: nothing we can use, and it may pass.
        _ => FailureClass::Transient,
    };
    ProviderFailure::new(class, detail)
}

/// `error.message`, shortened to one line.
pub fn error_message(json: &Value) -> Option<String> {
    let msg = json.pointer("/error/message").and_then(Value::as_str)?;
    Some(shorten(msg))
}

/// The start of a non-JSON body (an HTML error page from a proxy), for the log.
fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(400)]);
    if text.trim_start().starts_with('<') {
        String::new()
    } else {
        shorten(&text)
    }
}

/// One line, at most 160 characters.
pub fn shorten(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 160 {
        format!("{}…", line.chars().take(160).collect::<String>())
    } else {
        line
    }
}

/// Gemini's `error.details[].reason` values (`API_KEY_INVALID`, ...).
fn error_reasons(json: &Value) -> Vec<String> {
    json.pointer("/error/details")
        .and_then(Value::as_array)
        .map(|ds| {
            ds.iter()
                .filter_map(|d| d.get("reason").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A `Retry-After` header: delay-seconds, or an HTTP date (relative to `now`). Garbage is None.
pub fn retry_after_header(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let raw = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = raw.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let at = httpdate::parse_http_date(raw).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A Go-style or protobuf duration: `37s`, `57.238747106s`, `4.327s`, `2m59.56s`, `1h2m3s`, `120ms`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0.0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let (scale, unit_len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else {
            return None;
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && total < 1e9).then(|| Duration::from_secs_f64(total))
}

/// The wait in a message such as "Please retry in 37.1s." or "Please try again in 2m59.56s.".
pub fn retry_in_message(message: &str) -> Option<Duration> {
    for marker in ["retry in ", "try again in "] {
        if let Some(pos) = message.find(marker) {
            let tail = &message[pos + marker.len()..];
            let token: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                .collect();
            let token = token.trim_end_matches('.');
            if let Some(d) = parse_duration(token) {
                return Some(d);
            }
        }
    }
    None
}

/// The next midnight in US Pacific time after `now`, when Gemini's daily quotas reset.
pub fn until_pacific_midnight(now: SystemTime) -> Duration {
    DailyReset::PacificMidnight.until_next(now)
}

/// The next midnight UTC after `now`, the fallback reset time of a daily quota.
pub fn until_utc_midnight(now: SystemTime) -> Duration {
    DailyReset::UtcMidnight.until_next(now)
}

/// The shortest piece of a key that is redacted on its own: an API echoing the key cut in
/// two, reordered or encoded still never gets a run of this many of its characters through.
pub const MIN_KEY_FRAGMENT: usize = 8;

/// Removes `secret` from text that came from elsewhere (an error body may echo the request):
/// every run of text made of pieces of the key at least [`MIN_KEY_FRAGMENT`] long, as sent
/// or URL-encoded or JSON-escaped, becomes `[redacted]`. A key shorter than that is removed
/// where it appears whole (from 4 characters).
pub fn redact(text: &str, secret: Option<&str>) -> String {
    let Some(secret) = secret.filter(|s| s.len() >= 4) else {
        return text.to_string();
    };
    let spans = key_spans(text.as_bytes(), secret);
    if spans.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        // A span is bytes of the key; widen it to whole characters so the text stays UTF-8.
        let start = (0..=start.max(at))
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0)
            .max(at);
        let end = (end..=text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        out.push_str(&text[at..start]);
        out.push_str("[redacted]");
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// The byte ranges of `text` (sorted, disjoint) covered by pieces of `secret`: every window of
/// [`MIN_KEY_FRAGMENT`] bytes that also occurs in the key or one of its encodings, merged.
/// Overlapping windows chain, so a longer piece is one span however it was split or reordered.
fn key_spans(text: &[u8], secret: &str) -> Vec<(usize, usize)> {
    if secret.len() < MIN_KEY_FRAGMENT {
        let needle = secret.as_bytes();
        if needle.is_empty() || text.len() < needle.len() {
            return Vec::new();
        }
        return (0..=text.len() - needle.len())
            .filter(|&i| &text[i..i + needle.len()] == needle)
            .map(|i| (i, i + needle.len()))
            .fold(Vec::new(), merge_span);
    }
    let forms = key_forms(secret);
    let windows: std::collections::HashSet<&[u8]> = forms
        .iter()
        .flat_map(|f| f.as_bytes().windows(MIN_KEY_FRAGMENT))
        .collect();
    if text.len() < MIN_KEY_FRAGMENT {
        return Vec::new();
    }
    (0..=text.len() - MIN_KEY_FRAGMENT)
        .filter(|&i| windows.contains(&text[i..i + MIN_KEY_FRAGMENT]))
        .map(|i| (i, i + MIN_KEY_FRAGMENT))
        .fold(Vec::new(), merge_span)
}

fn merge_span(mut spans: Vec<(usize, usize)>, (start, end): (usize, usize)) -> Vec<(usize, usize)> {
    match spans.last_mut() {
        Some(last) if start <= last.1 => last.1 = last.1.max(end),
        _ => spans.push((start, end)),
    }
    spans
}

/// The key as an API may echo it: as sent, URL-encoded (either hex case), JSON-escaped
/// (with and without `\/`).
fn key_forms(secret: &str) -> Vec<String> {
    let url = |upper: bool| -> String {
        secret
            .bytes()
            .map(
                |b| match (b.is_ascii_alphanumeric() || b"-._~".contains(&b), upper) {
                    (true, _) => char::from(b).to_string(),
                    (false, true) => format!("%{b:02X}"),
                    (false, false) => format!("%{b:02x}"),
                },
            )
            .collect()
    };
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json.trim_matches('"').to_string();
    let mut forms = vec![
        secret.to_string(),
        url(true),
        url(false),
        json.replace('/', "\\/"),
        json,
    ];
    forms.sort();
    forms.dedup();
    forms
}

/// Deep-merges `extra` into `target`: objects merge key by key, anything else replaces.
pub fn merge_json(target: &mut Value, extra: &Value) {
    match (target, extra) {
        (Value::Object(t), Value::Object(e)) => {
            for (k, v) in e {
                merge_json(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, e) => *t = e.clone(),
    }
}

/// A rate-limit failure with the wait and scope worked out by a provider.
pub fn rate_limited(
    retry_after: Option<Duration>,
    scope: QuotaScope,
    message: &str,
) -> ProviderFailure {
    let detail = if message.is_empty() {
        "HTTP 429".to_string()
    } else {
        format!("HTTP 429: {message}")
    };
    ProviderFailure::rate_limited(retry_after, scope, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::calendar::days_from_civil;
    use std::time::UNIX_EPOCH;

    #[test]
    fn no_piece_of_a_key_of_eight_characters_survives_redaction() {
        let key = "AIzaSyRedact/Me+0123456789SECRET";
        let (a, b) = key.split_at(15);
        let enc = |s: &str| s.replace('/', "%2F").replace('+', "%2B");
        let cases = [
            format!("bad key {key} sent"),
            format!("key prefix {a} … suffix {b}"),
            format!("halves reversed: {b}{a}"),
            format!("url: key={}", enc(key)),
            format!(
                "url lower: key={}",
                enc(key)
                    .to_lowercase()
                    .replace("aizasyredact", "AIzaSyRedact")
            ),
            format!(
                "json: {}",
                serde_json::to_string(key).unwrap().replace('/', "\\/")
            ),
            format!("多バイト{a}文字{b}。"),
        ];
        for text in &cases {
            let out = redact(text, Some(key));
            for piece in (0..=key.len() - MIN_KEY_FRAGMENT).map(|i| &key[i..i + MIN_KEY_FRAGMENT]) {
                assert!(
                    !out.contains(piece),
                    "{piece:?} survived in {out:?} (from {text:?})"
                );
            }
            assert!(out.contains("[redacted]"), "{out}");
        }
        assert_eq!(redact("nothing here", Some(key)), "nothing here");
        // Seven characters of the key are not a fragment: ordinary words stay.
        assert_eq!(redact("AIzaSyR", Some(key)), "AIzaSyR");
        assert_eq!(
            redact("short key abcd here", Some("abcd")),
            "short key [redacted] here"
        );
        // A JSON body stays JSON, with the digits of its numbers intact.
        let mut reply = RawReply {
            status: 200,
            headers: HeaderMap::new(),
            body: format!(r#"{{"created": 1800000000, "id": "x-00000000-y", "echo": "{b}"}}"#)
                .into_bytes(),
        };
        reply.redact(Some("gsk_00000000000000000000"));
        let v: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(v["created"], 1800000000);
        assert_eq!(v["id"], "x-[redacted]-y");
        let mut reply = RawReply {
            status: 400,
            headers: HeaderMap::new(),
            body: format!("x {b} y {a}").into_bytes(),
        };
        reply.redact(Some(key));
        assert_eq!(
            String::from_utf8(reply.body).unwrap(),
            "x [redacted] y [redacted]"
        );
    }

    #[test]
    fn durations_table() {
        let cases: &[(&str, Option<f64>)] = &[
            ("37s", Some(37.0)),
            ("57.238747106s", Some(57.238747106)),
            ("4.327s", Some(4.327)),
            ("2m59.56s", Some(179.56)),
            ("2h6m43.2s", Some(7603.2)),
            ("120ms", Some(0.12)),
            ("", None),
            ("soon", None),
            ("37", None),
            ("-5s", None),
        ];
        for (text, want) in cases {
            let got = parse_duration(text).map(|d| d.as_secs_f64());
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-6, "{text}: {g} != {w}"),
                (g, w) => assert_eq!(g, *w, "{text}"),
            }
        }
    }

    #[test]
    fn retry_in_message_table() {
        let cases: &[(&str, Option<f64>)] = &[
            (
                "Quota exceeded ...\nPlease retry in 37.118216403s.",
                Some(37.118216403),
            ),
            (
                "Limit 8000, Used 7423. Please try again in 4.327s. Need more tokens?",
                Some(4.327),
            ),
            ("Please try again in 7m12.5s. Visit", Some(432.5)),
            ("Please retry later", None),
        ];
        for (text, want) in cases {
            let got = retry_in_message(text).map(|d| d.as_secs_f64());
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-6, "{text}"),
                (g, w) => assert_eq!(g, *w, "{text}"),
            }
        }
    }

    #[test]
    fn retry_after_header_table() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_767_544);
        let in_90s = httpdate::fmt_http_date(now + Duration::from_secs(90));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        let cases: Vec<(&str, Option<Duration>)> = vec![
            ("5", Some(Duration::from_secs(5))),
            ("  12 ", Some(Duration::from_secs(12))),
            ("1.5", Some(Duration::from_millis(1500))),
            (&in_90s, Some(Duration::from_secs(90))),
            (&past, Some(Duration::ZERO)),
            ("garbage", None),
            ("-3", None),
            ("99999999999999", Some(Duration::from_secs(1_000_000_000))),
        ];
        for (value, want) in cases {
            let mut h = HeaderMap::new();
            h.insert(reqwest::header::RETRY_AFTER, value.parse().unwrap());
            assert_eq!(retry_after_header(&h, now), want, "{value}");
        }
        assert_eq!(retry_after_header(&HeaderMap::new(), now), None);
    }

    #[test]
    fn pacific_midnight_follows_daylight_saving() {
        // 2026-07-01 06:00 UTC is 23:00 PDT on June 30: one hour to midnight.
        let summer = UNIX_EPOCH
            + Duration::from_secs(days_from_civil(2026, 7, 1) as u64 * 86_400 + 6 * 3600);
        assert_eq!(until_pacific_midnight(summer), Duration::from_secs(3600));
        // 2026-01-15 07:00 UTC is 23:00 PST on Jan 14: one hour to midnight.
        let winter = UNIX_EPOCH
            + Duration::from_secs(days_from_civil(2026, 1, 15) as u64 * 86_400 + 7 * 3600);
        assert_eq!(until_pacific_midnight(winter), Duration::from_secs(3600));
    }

    #[test]
    fn merge_is_deep_for_objects() {
        let mut t = serde_json::json!({"generationConfig": {"a": 1, "b": {"c": 2}}});
        merge_json(
            &mut t,
            &serde_json::json!({"generationConfig": {"b": {"d": 3}}, "x": true}),
        );
        assert_eq!(
            t,
            serde_json::json!({"generationConfig": {"a": 1, "b": {"c": 2, "d": 3}}, "x": true})
        );
    }
}

//! The control protocol between `yaku status|pause|resume|reload|stop` and the running daemon: one
//! JSON request line, one JSON reply line. Requests are a typed enum, validated here, so the
//! server never does arithmetic on a value it has not checked.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::core::daemon::DaemonStatus;

/// The longest pause a request may ask for: 30 days. Longer means "until `yaku resume`".
pub const MAX_PAUSE: Duration = Duration::from_secs(30 * 86_400);

/// The longest request line the server reads.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// One request, as sent on the wire: `{"cmd": "pause", "for_secs": 600}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Pause {
        /// Seconds; absent or null: until resumed.
        #[serde(default)]
        for_secs: Option<f64>,
    },
    Resume,
    Reload,
    /// Stop the daemon as SIGTERM does.
    Stop,
}

/// Why a request line was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("the request is not UTF-8 text")]
    NotUtf8,
    #[error(
        "not a valid request ({0}); send {{\"cmd\": \"status\" | \"pause\" | \"resume\" | \"reload\" | \"stop\"}}"
    )]
    Malformed(String),
    #[error("for_secs must be a number of seconds from 0 to {max}, not {got}")]
    BadDuration { got: String, max: u64 },
}

impl Request {
    /// Parses and validates one request line.
    pub fn parse(line: &[u8]) -> Result<Request, ProtocolError> {
        let text = std::str::from_utf8(line).map_err(|_| ProtocolError::NotUtf8)?;
        let req: Request = serde_json::from_str(text.trim())
            .map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        if let Request::Pause { for_secs: Some(s) } = req {
            pause_duration(s)?;
        }
        Ok(req)
    }

    /// The request line to send.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        line.push('\n');
        line
    }

    /// The pause this request asks for: `Ok(None)` for "until resumed".
    pub fn pause_for(&self) -> Result<Option<Duration>, ProtocolError> {
        match self {
            Request::Pause { for_secs: Some(s) } => pause_duration(*s).map(Some),
            _ => Ok(None),
        }
    }
}

/// A pause length in range: finite, at least 0, at most [`MAX_PAUSE`].
pub fn pause_duration(secs: f64) -> Result<Duration, ProtocolError> {
    if secs.is_finite() && secs >= 0.0 && secs <= MAX_PAUSE.as_secs_f64() {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(ProtocolError::BadDuration {
            got: secs.to_string(),
            max: MAX_PAUSE.as_secs(),
        })
    }
}

/// `{"ok": false, "error": ...}`.
pub fn error_reply(message: &str) -> Value {
    json!({ "ok": false, "error": message })
}

/// Renders the daemon's status as the `yaku status --json` object.
pub fn status_json(st: &DaemonStatus, uptime: Duration) -> Value {
    let c = &st.counts;
    let served = c.cached + c.translated;
    json!({
        "running": true,
        "pid": std::process::id(),
        "uptime_secs": uptime.as_secs(),
        "paused": st.paused,
        "paused_for_secs": st.paused_for.map(|d| d.as_secs()),
        "watch": st.watch.map(|w| w.as_str()),
        "queue": st.queue,
        "game": st.game,
        "last_latency_ms": st.last_latency_ms,
        "cache_hit_rate": (served > 0).then(|| c.cached as f64 / served as f64),
        "lines": {
            "accepted": c.accepted,
            "translated": c.translated,
            "cached": c.cached,
            "failed": c.failed,
            "skipped": c.superseded,
            "rejected": c.rejected,
        },
        "rejected_by_gate": c.rejected_by_gate,
        "providers": st.providers.iter().map(|p| json!({
            "name": p.name,
            "state": p.state,
            "open_for_secs": p.open_for.map(|d| d.as_secs()),
            "reason": p.reason,
            "daily_remaining": p.daily_remaining,
        })).collect::<Vec<_>>(),
        // The position is 1-based, in the script's lines as yaku reads them.
        "lookahead": st.lookahead.as_ref().map(|l| json!({
            "script": l.script,
            "position": l.position.map(|p| p + 1),
            "lines": l.lines,
            "ahead": l.ahead,
            "ready_ahead": l.ready_ahead,
            "in_flight": l.in_flight,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_validated_before_anything_acts_on_them() {
        let cases: &[(&[u8], Result<Request, &str>)] = &[
            (br#"{"cmd":"status"}"#, Ok(Request::Status)),
            (br#"{"cmd":"pause"}"#, Ok(Request::Pause { for_secs: None })),
            (
                br#"{"cmd":"pause","for_secs":null}"#,
                Ok(Request::Pause { for_secs: None }),
            ),
            (
                br#"{"cmd":"pause","for_secs":600}"#,
                Ok(Request::Pause {
                    for_secs: Some(600.0),
                }),
            ),
            (
                br#"{"cmd":"pause","for_secs":0}"#,
                Ok(Request::Pause {
                    for_secs: Some(0.0),
                }),
            ),
            (br#"{"cmd":"resume"}"#, Ok(Request::Resume)),
            (br#"{"cmd":"reload"}"#, Ok(Request::Reload)),
            (br#"{"cmd":"stop"}"#, Ok(Request::Stop)),
            (br#"{"cmd":"pause","for_secs":1e19}"#, Err("for_secs")),
            (br#"{"cmd":"pause","for_secs":-1}"#, Err("for_secs")),
            (br#"{"cmd":"pause","for_secs":2592001}"#, Err("for_secs")),
            (
                br#"{"cmd":"pause","for_secs":"10"}"#,
                Err("not a valid request"),
            ),
            (br#"{"cmd":"explode"}"#, Err("not a valid request")),
            (br#"{"for_secs":1}"#, Err("not a valid request")),
            (b"not json", Err("not a valid request")),
            (b"", Err("not a valid request")),
            (b"{\"cmd\":\"st\xffatus\"}", Err("not UTF-8")),
        ];
        for (line, want) in cases {
            let got = Request::parse(line);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g, "{}", String::from_utf8_lossy(line)),
                (Err(fragment), Err(e)) => assert!(
                    e.to_string().contains(fragment),
                    "{}: {e}",
                    String::from_utf8_lossy(line)
                ),
                _ => panic!("{}: got {got:?}", String::from_utf8_lossy(line)),
            }
        }
    }

    #[test]
    fn a_request_survives_the_wire() {
        for req in [
            Request::Status,
            Request::Pause {
                for_secs: Some(90.0),
            },
            Request::Pause { for_secs: None },
            Request::Resume,
            Request::Reload,
        ] {
            assert_eq!(Request::parse(req.to_line().as_bytes()), Ok(req));
        }
    }
}

//! The notification capture: `dbus-monitor` on the test's private bus, its text output parsed
//! into structured `Notify` calls, each matched with the id the notification server returned.
//!
//! dbus-monitor prints strings without escaping, so a body may span lines; the parser relies on
//! the fixed `Notify` signature (s u s s s as a{sv} i) and on top-level arguments being
//! indented by exactly three spaces, which nested values (dict entries, variants) never are.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One `org.freedesktop.Notifications.Notify` call seen on the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The caller's unique bus name (":1.7").
    pub sender: String,
    pub serial: u64,
    pub app_name: String,
    pub replaces_id: u32,
    pub app_icon: String,
    pub summary: String,
    pub body: String,
    pub expire_timeout: i32,
    /// The id the notification server answered with, once its reply has been seen.
    pub returned_id: Option<u32>,
    pub seen_at: Instant,
}

#[derive(Default)]
struct State {
    ready: bool,
    notifications: Vec<Notification>,
    /// The last lines of raw output, for failure messages.
    tail: VecDeque<String>,
}

/// A handle on the capture; cheap to clone.
#[derive(Clone, Default)]
pub struct Capture {
    state: Arc<Mutex<State>>,
}

enum Block {
    Skip,
    Notify {
        sender: String,
        serial: u64,
        text: String,
    },
    Return {
        destination: String,
        reply_serial: u64,
    },
}

impl Capture {
    /// Parses dbus-monitor's output from `out` on a thread of its own until EOF.
    pub fn start(out: impl Read + Send + 'static) -> Capture {
        let capture = Capture::default();
        let writer = capture.clone();
        std::thread::spawn(move || writer.run(out));
        capture
    }

    /// True once dbus-monitor has become a monitor (it then sees every later call).
    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    pub fn notifications(&self) -> Vec<Notification> {
        self.lock().notifications.clone()
    }

    /// The last lines dbus-monitor printed.
    pub fn raw_tail(&self) -> String {
        self.lock()
            .tail
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self, out: impl Read) {
        let mut reader = BufReader::new(out);
        let mut block = Block::Skip;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.strip_suffix('\n').unwrap_or(&line).to_owned();
            {
                let mut st = self.lock();
                st.tail.push_back(line.clone());
                while st.tail.len() > 60 {
                    st.tail.pop_front();
                }
            }
            if is_header(&line) {
                block = self.header(&line);
                continue;
            }
            block = match block {
                Block::Skip => Block::Skip,
                Block::Notify {
                    sender,
                    serial,
                    mut text,
                } => {
                    text.push_str(&line);
                    text.push('\n');
                    match parse_notify_args(&text) {
                        Some(args) => {
                            self.lock().notifications.push(Notification {
                                sender,
                                serial,
                                app_name: args.app_name,
                                replaces_id: args.replaces_id,
                                app_icon: args.app_icon,
                                summary: args.summary,
                                body: args.body,
                                expire_timeout: args.expire_timeout,
                                returned_id: None,
                                seen_at: Instant::now(),
                            });
                            Block::Skip
                        }
                        None => Block::Notify {
                            sender,
                            serial,
                            text,
                        },
                    }
                }
                Block::Return {
                    destination,
                    reply_serial,
                } => {
                    if let Some(id) = line
                        .strip_prefix("   uint32 ")
                        .and_then(|v| v.trim().parse::<u32>().ok())
                    {
                        let mut st = self.lock();
                        if let Some(n) = st
                            .notifications
                            .iter_mut()
                            .rev()
                            .find(|n| n.sender == destination && n.serial == reply_serial)
                        {
                            n.returned_id = Some(id);
                        }
                    }
                    Block::Skip
                }
            };
        }
    }

    fn header(&self, line: &str) -> Block {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|tok| tok.strip_prefix(name))
                .map(|v| v.trim_end_matches(';').to_owned())
        };
        if line.starts_with("signal ") && field("member=").as_deref() == Some("NameLost") {
            // BecomeMonitor took effect: dbus-monitor gives up its name when it starts monitoring.
            self.lock().ready = true;
            return Block::Skip;
        }
        let is_notify = line.starts_with("method call ")
            && field("interface=").as_deref() == Some("org.freedesktop.Notifications")
            && field("member=").as_deref() == Some("Notify");
        let serial = |name: &str| field(name).and_then(|s| s.parse::<u64>().ok());
        if let (true, Some(sender), Some(serial)) = (is_notify, field("sender="), serial("serial="))
        {
            return Block::Notify {
                sender,
                serial,
                text: String::new(),
            };
        }
        match (
            line.starts_with("method return "),
            field("destination="),
            serial("reply_serial="),
        ) {
            (true, Some(destination), Some(reply_serial)) => Block::Return {
                destination,
                reply_serial,
            },
            _ => Block::Skip,
        }
    }
}

fn is_header(line: &str) -> bool {
    [
        "method call time=",
        "method return time=",
        "signal time=",
        "error time=",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}

#[derive(Debug, PartialEq)]
struct NotifyArgs {
    app_name: String,
    replaces_id: u32,
    app_icon: String,
    summary: String,
    body: String,
    expire_timeout: i32,
}

/// The arguments of a Notify call from dbus-monitor's text, or None while incomplete.
fn parse_notify_args(text: &str) -> Option<NotifyArgs> {
    let rest = text.strip_prefix("   string \"")?;
    let (app_name, rest) = rest.split_once("\"\n   uint32 ")?;
    let (replaces_id, rest) = rest.split_once('\n')?;
    let rest = rest.strip_prefix("   string \"")?;
    let (app_icon, rest) = rest.split_once("\"\n   string \"")?;
    let (summary, rest) = rest.split_once("\"\n   string \"")?;
    let (body, rest) = rest.split_once("\"\n   array [")?;
    // The last argument, expire_timeout, is the only top-level int32.
    let at = rest.find("\n   int32 ")?;
    let (timeout, _) = rest[at + "\n   int32 ".len()..].split_once('\n')?;
    Some(NotifyArgs {
        app_name: app_name.to_owned(),
        replaces_id: replaces_id.trim().parse().ok()?,
        app_icon: app_icon.to_owned(),
        summary: summary.to_owned(),
        body: body.to_owned(),
        expire_timeout: timeout.trim().parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL: &str = "method call time=1795776277.403107 sender=:1.3 -> destination=org.freedesktop.Notifications serial=3 path=/org/freedesktop/Notifications; interface=org.freedesktop.Notifications; member=Notify
   string \"yaku\"
   uint32 0
   string \"\"
   string \"sum \"q\" & <b>\"
   string \"line1
line2
   string \"x\"\"
   array [
   ]
   array [
      dict entry(
         string \"urgency\"
         variant             int32 1
      )
   ]
   int32 8000
method return time=1795776277.403923 sender=:1.1 -> destination=:1.3 serial=4 reply_serial=3
   uint32 2
";

    #[test]
    fn parses_a_notify_call_with_a_multiline_body_and_its_returned_id() {
        let capture = Capture::start(std::io::Cursor::new(CALL.as_bytes().to_vec()));
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while capture
            .notifications()
            .first()
            .and_then(|n| n.returned_id)
            .is_none()
            && Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let n = &capture.notifications()[0];
        assert_eq!(
            (
                n.sender.as_str(),
                n.serial,
                n.app_name.as_str(),
                n.replaces_id,
                n.summary.as_str()
            ),
            (":1.3", 3, "yaku", 0, "sum \"q\" & <b>")
        );
        assert_eq!(n.body, "line1\nline2\n   string \"x\"");
        assert_eq!((n.expire_timeout, n.returned_id), (8000, Some(2)));
    }
}

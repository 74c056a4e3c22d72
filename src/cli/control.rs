//! `yaku status|pause|resume|reload|stop`: requests to the running daemon over its control channel.

use std::time::Duration;

use super::{NotRunning, UsageError};
use crate::core::chain::human_duration;
use crate::daemon::control::{self, ControlError};
use crate::protocol::{self, Request};
use crate::sys::dirs::Dirs;

/// Sends `req` to the running daemon; "not running" becomes [`NotRunning`] (exit 1).
pub fn request(req: Request) -> anyhow::Result<serde_json::Value> {
    request_in(&runtime_dir()?, req)
}

/// The runtime dir the daemon's socket and lock are in.
fn runtime_dir() -> anyhow::Result<std::path::PathBuf> {
    // A socket in a dir others could have planted it in is not yaku's: nothing to talk to.
    Dirs::resolve()?
        .runtime_for_client()
        .ok_or_else(|| NotRunning.into())
}

fn request_in(runtime: &std::path::Path, req: Request) -> anyhow::Result<serde_json::Value> {
    match control::request(&control::socket_path(runtime), &req) {
        Ok(v) => Ok(v),
        Err(ControlError::NotRunning) => Err(NotRunning.into()),
        Err(e) => Err(e.into()),
    }
}

/// `yaku pause [--for DURATION]`.
pub fn pause(duration: Option<&str>) -> anyhow::Result<()> {
    let for_secs = match duration {
        Some(d) => {
            let parsed = crate::adapters::provider::http::parse_duration(d)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    UsageError(format!(
                        "\"{d}\" is not a duration such as 10m, 90s or 1h30m"
                    ))
                })?;
            if parsed > protocol::MAX_PAUSE {
                return Err(UsageError(format!(
                    "\"{d}\" is longer than {}; leave out --for to pause until `yaku resume`",
                    human_duration(protocol::MAX_PAUSE)
                ))
                .into());
            }
            Some(parsed.as_secs_f64())
        }
        None => None,
    };
    let v = request(Request::Pause { for_secs })?;
    match v["paused_for_secs"].as_u64() {
        Some(secs) => println!("paused for {}", human_duration(Duration::from_secs(secs))),
        None => println!("paused until `yaku resume`"),
    }
    Ok(())
}

/// `yaku resume`.
pub fn resume() -> anyhow::Result<()> {
    request(Request::Resume)?;
    println!("resumed: reading the clipboard again");
    Ok(())
}

/// `yaku reload`.
pub fn reload() -> anyhow::Result<()> {
    request(Request::Reload)?;
    println!("reloaded the config");
    Ok(())
}

/// How long `yaku stop` waits for the daemon to let go of its lock: the line in flight may
/// take up to its deadline to finish.
const STOP_WAIT: Duration = Duration::from_secs(60);

/// `yaku stop`: asks the daemon to stop as SIGTERM does, then waits until it has released
/// its lock, so a script can start yaku again right after.
pub fn stop() -> anyhow::Result<()> {
    let runtime = runtime_dir()?;
    let v = request_in(&runtime, Request::Stop)?;
    let pid = v["pid"]
        .as_u64()
        .map(|p| format!(" (pid {p})"))
        .unwrap_or_default();
    let asked = std::time::Instant::now();
    while crate::daemon::lock::is_held(&runtime) {
        if asked.elapsed() >= STOP_WAIT {
            anyhow::bail!(
                "yaku{pid} was asked to stop but is still running after {}",
                human_duration(STOP_WAIT)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("yaku stopped{pid}");
    Ok(())
}

/// `yaku status [--json]`.
pub fn status(as_json: bool) -> anyhow::Result<()> {
    let mut v = request(Request::Status)?;
    if let Some(obj) = v.as_object_mut() {
        obj.remove("ok");
    }
    if as_json {
        println!("{v}");
        return Ok(());
    }
    let secs = |v: &serde_json::Value| v.as_u64().map(|s| human_duration(Duration::from_secs(s)));
    println!(
        "yaku is running (pid {}, up {})",
        v["pid"],
        secs(&v["uptime_secs"]).unwrap_or_default()
    );
    match (v["paused"].as_bool(), secs(&v["paused_for_secs"])) {
        (Some(true), Some(left)) => println!("paused: the clipboard is not read for {left} more"),
        (Some(true), None) => println!("paused: the clipboard is not read until `yaku resume`"),
        _ => match v["watch"].as_str() {
            Some("events") => println!("watching the clipboard (change events)"),
            Some(mode) => println!("watching the clipboard ({mode})"),
            None => println!("watching the clipboard"),
        },
    }
    if let Some(game) = v["game"].as_str() {
        println!("game profile: {game} (the active window's)");
    }
    let l = &v["lines"];
    println!(
        "lines: {} accepted, {} translated, {} from the cache, {} failed, {} skipped; queue {}",
        l["accepted"], l["translated"], l["cached"], l["failed"], l["skipped"], v["queue"]
    );
    if let Some(by_gate) = v["rejected_by_gate"].as_object()
        && !by_gate.is_empty()
    {
        let gates: Vec<String> = by_gate.iter().map(|(g, n)| format!("{g} {n}")).collect();
        println!("rejected: {} ({})", l["rejected"], gates.join(", "));
    }
    let ahead = &v["lookahead"];
    if let Some(script) = ahead["script"].as_str() {
        let lines = &ahead["lines"];
        match ahead["position"].as_u64() {
            Some(pos) => println!(
                "look-ahead: line {pos} of {lines} in {script}; {} of the next {} ready{}",
                ahead["ready_ahead"],
                ahead["ahead"],
                if ahead["in_flight"].as_bool() == Some(true) {
                    ", a batch in flight"
                } else {
                    ""
                }
            ),
            None => println!("look-ahead: {script} ({lines} lines), no line of it copied yet"),
        }
    }
    if let Some(ms) = v["last_latency_ms"].as_u64() {
        println!("last translation took {ms} ms");
    }
    if let Some(rate) = v["cache_hit_rate"].as_f64() {
        println!("cache hit rate {:.0} %", rate * 100.0);
    }
    for p in v["providers"].as_array().into_iter().flatten() {
        let mut line = format!(
            "  {:<12} {}",
            p["name"].as_str().unwrap_or("?"),
            p["state"].as_str().unwrap_or("?")
        );
        if let Some(left) = secs(&p["open_for_secs"]) {
            line.push_str(&format!(" for {left}"));
        }
        if let Some(reason) = p["reason"].as_str() {
            line.push_str(&format!(" ({reason})"));
        }
        if let Some(n) = p["daily_remaining"].as_u64() {
            line.push_str(&format!(", {n} requests left today"));
        }
        println!("{line}");
    }
    Ok(())
}

//! Raw → validated, one function per section; every error names the file, line and key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::raw::*;
use super::*;
use crate::core::breaker::BreakerConfig;
use crate::core::games::{GameProfile, Games};
use crate::core::gates::{GateConfig, GateConfigError, Gates};
use crate::core::memory::{Glossary, GlossaryEntry, parse_glossary_tsv};
use crate::core::warm::WarmConfig;

impl Config {
    pub(super) fn from_raw(
        mut raw: RawConfig,
        text: &str,
        path: &Path,
        exists: bool,
    ) -> Result<Config, ConfigError> {
        let v = Validator { text, path };
        let translation = translation(&v, &raw.translation)?;
        let breaker = breaker(&v, &raw.breaker)?;
        let connections = connections(&v, &raw.connections)?;
        if raw.providers.is_empty() {
            return Err(v.err(&["providers"], "at least one [[providers]] entry is needed"));
        }
        let mut providers: Vec<ProviderConfig> = Vec::with_capacity(raw.providers.len());
        for (i, p) in std::mem::take(&mut raw.providers).into_iter().enumerate() {
            let p = provider(&v, i, p)?;
            if providers.iter().any(|q| q.name == p.name) {
                let at: Vec<PathSeg> = vec!["providers".into(), i.into(), "name".into()];
                return Err(v.err_at(
                    &at,
                    &format!(
                        "\"{}\" is used by an earlier provider; names must be unique",
                        p.name
                    ),
                ));
            }
            providers.push(p);
        }
        let clipboard = clipboard(&v, &raw.clipboard, &raw.translation)?;
        let notify = notify(&v, &raw.notify)?;
        let log = log(&v, &raw.log)?;
        let mut glossary_files = Vec::new();
        let context = context(&v, &raw, &mut glossary_files)?;
        let store = store(&v, &raw)?;
        let games = games(&v, &raw, &clipboard.gates, &mut glossary_files)?;
        let intake = intake(&v, &raw.intake, &games)?;
        let lookahead = lookahead(&v, &raw.lookahead)?;
        Ok(Config {
            lookahead,
            games,
            glossary_files,
            intake,
            source: exists.then(|| path.to_path_buf()),
            path: path.to_path_buf(),
            context,
            store,
            clipboard,
            notify,
            log,
            translation,
            breaker,
            connections,
            providers,
        })
    }
}

fn translation(v: &Validator<'_>, t: &RawTranslation) -> Result<TranslationConfig, ConfigError> {
    let options = v.int_range(t.options, 1, 5, &["translation", "options"])? as u8;
    let deadline = v.secs(
        t.deadline_secs,
        1.0,
        600.0,
        &["translation", "deadline_secs"],
    )?;
    for (value, key) in [
        (&t.source_language, "source_language"),
        (&t.target_language, "target_language"),
    ] {
        if value.trim().is_empty() {
            return Err(v.err(
                &["translation", key],
                "must name a language, such as \"Japanese\"",
            ));
        }
    }
    Ok(TranslationConfig {
        source_language: t.source_language.trim().to_string(),
        target_language: t.target_language.trim().to_string(),
        options,
        instructions: t.instructions.trim().to_string(),
        deadline,
        reply_checks: t.reply_checks,
    })
}

fn breaker(v: &Validator<'_>, b: &RawBreaker) -> Result<BreakerConfig, ConfigError> {
    let failures_to_open =
        v.int_range(b.failures_to_open, 1, 100, &["breaker", "failures_to_open"])? as u32;
    let open = v.secs(b.open_secs, 1.0, 86_400.0, &["breaker", "open_secs"])?;
    let max_open = v.secs(
        b.max_open_secs,
        1.0,
        86_400.0,
        &["breaker", "max_open_secs"],
    )?;
    if max_open < open {
        return Err(v.err(
            &["breaker", "max_open_secs"],
            "must be at least `open_secs`",
        ));
    }
    Ok(BreakerConfig {
        failures_to_open,
        open,
        max_open,
    })
}

fn connections(v: &Validator<'_>, c: &RawConnections) -> Result<ConnectionsConfig, ConfigError> {
    let at = |key: &'static str| ["connections", key];
    let every = v.secs(c.warm_every_secs, 0.1, 3600.0, &at("warm_every_secs"))?;
    let idle_after = v.secs(c.idle_after_secs, 0.1, 86_400.0, &at("idle_after_secs"))?;
    Ok(ConnectionsConfig {
        keep_warm: c.keep_warm.then_some(WarmConfig { every, idle_after }),
    })
}

/// One `[[providers]]` entry (the `i`th); uniqueness of names is checked by the caller.
fn provider(v: &Validator<'_>, i: usize, p: RawProvider) -> Result<ProviderConfig, ConfigError> {
    let at = |key: &'static str| -> Vec<PathSeg> { vec!["providers".into(), i.into(), key.into()] };
    let name = p.name.trim().to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(v.err_at(
            &at("name"),
            "must be a non-empty name of letters, digits, '-' or '_'",
        ));
    }
    if p.model.trim().is_empty() {
        return Err(v.err_at(&at("model"), "must name a model"));
    }
    let base_url = match (p.base_url, p.kind) {
        (Some(u), _) => u.trim().trim_end_matches('/').to_string(),
        (None, ProviderKind::Gemini) => GEMINI_BASE_URL.to_string(),
        (None, ProviderKind::Openai) => {
            return Err(v.err_at(
                &at("name"),
                &format!("provider \"{name}\" needs `base_url` (for example \"https://api.groq.com/openai/v1\")"),
            ));
        }
    };
    check_base_url(&base_url).map_err(|m| v.err_at(&at("base_url"), &m))?;
    let rpm = v.int_range_at(
        p.requests_per_minute,
        0,
        100_000,
        &at("requests_per_minute"),
    )? as u32;
    let rpd = v.int_range_at(p.requests_per_day, 0, 10_000_000, &at("requests_per_day"))? as u32;
    let tpm = v.int_range_at(
        p.tokens_per_minute,
        0,
        100_000_000,
        &at("tokens_per_minute"),
    )? as u32;
    let timeout = v.secs_at(p.timeout_secs, 1.0, 600.0, &at("timeout_secs"))?;
    let hedge_after_ms =
        v.int_range_at(p.hedge_after_ms, 0, 600_000, &at("hedge_after_ms"))? as u64;
    let api_key_env = p
        .api_key_env
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let api_key = p.api_key.filter(|k| !k.trim().is_empty());
    let api_key_line = api_key.as_ref().and_then(|_| v.line(&at("api_key")));
    let extra = match p.extra {
        Some(table) => serde_json::to_value(&table)
            .map_err(|e| v.err_at(&at("extra"), &format!("cannot be sent as JSON: {e}")))?,
        None => serde_json::Value::Object(Default::default()),
    };
    Ok(ProviderConfig {
        name,
        kind: p.kind,
        model: p.model.trim().to_string(),
        base_url,
        api_key_env,
        api_key,
        requests_per_minute: rpm,
        requests_per_day: rpd,
        tokens_per_minute: tpm,
        timeout,
        hedge_after: Duration::from_millis(hedge_after_ms),
        json_mode: p.json_mode,
        extra,
        api_key_line,
    })
}

/// `[clipboard]`, and the gates it configures with the translation's source language.
fn clipboard(
    v: &Validator<'_>,
    c: &RawClipboard,
    t: &RawTranslation,
) -> Result<ClipboardConfig, ConfigError> {
    let poll_interval = Duration::from_millis(v.int_range(
        c.poll_interval_ms,
        20,
        10_000,
        &["clipboard", "poll_interval_ms"],
    )? as u64);
    let min_chars = v.int_range(c.min_chars, 1, 100_000, &["clipboard", "min_chars"])? as usize;
    let max_chars = v.int_range(c.max_chars, 1, 100_000, &["clipboard", "max_chars"])? as usize;
    let mut ignore = Vec::with_capacity(c.ignore.len());
    for (i, pattern) in c.ignore.iter().enumerate() {
        let re = regex::Regex::new(pattern).map_err(|e| {
            v.err_at(
                &["clipboard".into(), "ignore".into(), i.into()],
                &format!("not a valid regular expression: {e}"),
            )
        })?;
        ignore.push(re);
    }
    let gates = GateConfig {
        min_chars,
        max_chars,
        min_script_ratio: c.min_script_ratio,
        require_script: c.require_script,
        source_language: t.source_language.trim().to_string(),
        ignore,
    };
    // The gates check their own settings; the errors are placed on the keys that set them.
    Gates::new(gates.clone()).map_err(|e| match e {
        GateConfigError::UnsupportedLanguage { .. } => {
            v.err(&["translation", "source_language"], &e.to_string())
        }
        GateConfigError::Lengths { .. } => {
            v.err(&["clipboard", "max_chars"], "must be at least `min_chars`")
        }
        GateConfigError::ScriptRatio(ratio) => v.err(
            &["clipboard", "min_script_ratio"],
            &format!("{ratio} is out of range: must be 0.0 to 1.0"),
        ),
        other => v.err(&["clipboard"], &other.to_string()),
    })?;
    Ok(ClipboardConfig {
        watch: c.watch,
        poll_interval,
        collapse_repeats: c.collapse_repeats,
        gates,
    })
}

fn notify(v: &Validator<'_>, n: &RawNotify) -> Result<NotifyConfig, ConfigError> {
    let timeout_ms = v.int_range(n.timeout_ms, 0, 600_000, &["notify", "timeout_ms"])? as u32;
    Ok(NotifyConfig {
        enabled: n.enabled,
        timeout_ms,
        show_original: n.show_original,
    })
}

fn log(v: &Validator<'_>, l: &RawLog) -> Result<LogConfig, ConfigError> {
    // One of the five names only: EnvFilter would take "verbose" as a target name and log
    // nothing at all, so it is no test of a level.
    if !LOG_LEVELS.contains(&l.level.trim().to_ascii_lowercase().as_str()) {
        return Err(v.err(
            &["log", "level"],
            &format!(
                "\"{}\" is not a log level (error, warn, info, debug, trace)",
                l.level
            ),
        ));
    }
    let keep_files = v.int_range(l.keep_files, 1, 10_000, &["log", "keep_files"])? as usize;
    Ok(LogConfig {
        level: l.level.trim().to_ascii_lowercase(),
        dir: Some(l.dir.trim())
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
        rotation: l.rotation,
        keep_files,
        include_text: l.include_text,
    })
}

/// The context window and the glossary (inline and `glossary_file`); the file read is added
/// to `files`.
fn context(
    v: &Validator<'_>,
    raw: &RawConfig,
    files: &mut Vec<PathBuf>,
) -> Result<ContextConfig, ConfigError> {
    let t = &raw.translation;
    let lines = v.int_range(t.context_lines, 0, 50, &["translation", "context_lines"])? as usize;
    let reset = v.secs(
        t.context_reset_secs,
        1.0,
        86_400.0,
        &["translation", "context_reset_secs"],
    )?;
    let mut glossary = inline_glossary(v, &raw.glossary, &["glossary".into()])?;
    glossary.extend(glossary_file(
        v,
        &t.glossary_file,
        &["translation".into(), "glossary_file".into()],
        files,
    )?);
    Ok(ContextConfig {
        lines,
        reset,
        glossary: Glossary::new(glossary),
    })
}

/// `[[games]]`: names unique, `match` a valid regex, each override checked as its global
/// key is. A game's glossary (inline and file) replaces the global one for its lines.
fn games(
    v: &Validator<'_>,
    raw: &RawConfig,
    gates: &GateConfig,
    files: &mut Vec<PathBuf>,
) -> Result<Games, ConfigError> {
    let mut profiles: Vec<GameProfile> = Vec::with_capacity(raw.games.len());
    for (i, g) in raw.games.iter().enumerate() {
        let at = |key: &'static str| -> Vec<PathSeg> { vec!["games".into(), i.into(), key.into()] };
        let name = g.name.trim().to_string();
        if name.is_empty() {
            return Err(v.err_at(&at("name"), "must name the game"));
        }
        if profiles.iter().any(|p| p.name == name) {
            return Err(v.err_at(
                &at("name"),
                &format!("\"{name}\" is used by an earlier game; names must be unique"),
            ));
        }
        if g.matcher.trim().is_empty() {
            return Err(v.err_at(
                &at("match"),
                "must be a regular expression on the game window's class, title or process name",
            ));
        }
        let matcher = regex::Regex::new(&g.matcher).map_err(|e| {
            v.err_at(
                &at("match"),
                &format!("not a valid regular expression: {e}"),
            )
        })?;
        let mut entries = match &g.glossary {
            Some(table) => Some(inline_glossary(v, table, &at("glossary"))?),
            None => None,
        };
        if let Some(file) = &g.glossary_file {
            let read = glossary_file(v, file, &at("glossary_file"), files)?;
            entries.get_or_insert_with(Vec::new).extend(read);
        }
        let source_language = match g.source_language.as_deref().map(str::trim) {
            None => None,
            Some("") => {
                return Err(v.err_at(
                    &at("source_language"),
                    "must name a language, such as \"Japanese\"",
                ));
            }
            Some(lang) => {
                // Only a language yaku knows the script of: the same rule as the global key.
                let check = GateConfig {
                    source_language: lang.to_string(),
                    ..gates.clone()
                };
                if let Err(e @ GateConfigError::UnsupportedLanguage { .. }) = Gates::new(check) {
                    return Err(v.err_at(&at("source_language"), &e.to_string()));
                }
                Some(lang.to_string())
            }
        };
        let context_lines = match g.context_lines {
            Some(n) => Some(v.int_range_at(n, 0, 50, &at("context_lines"))? as usize),
            None => None,
        };
        profiles.push(GameProfile {
            name,
            matcher,
            glossary: entries.map(Glossary::new),
            instructions: g.instructions.as_ref().map(|s| s.trim().to_string()),
            source_language,
            context_lines,
        });
    }
    Ok(Games::new(profiles))
}

/// `[cache]`, `[history]` and `[store]`.
fn store(v: &Validator<'_>, raw: &RawConfig) -> Result<StoreConfig, ConfigError> {
    let max_rows = v.int_range(raw.history.max_rows, 0, i64::MAX, &["history", "max_rows"])? as u64;
    let max_days = v.int_range(raw.history.max_days, 0, 100_000, &["history", "max_days"])? as u64;
    Ok(StoreConfig {
        cache_enabled: raw.cache.enabled,
        history_max_rows: max_rows,
        history_max_days: max_days,
        path: Some(raw.store.path.trim())
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
    })
}

/// The `[glossary]` table.
fn inline_glossary(
    v: &Validator<'_>,
    table: &toml::Table,
    segs: &[PathSeg],
) -> Result<Vec<GlossaryEntry>, ConfigError> {
    let mut glossary = Vec::new();
    for (term, rendering) in table {
        let Some(target) = rendering.as_str().map(str::trim).filter(|t| !t.is_empty()) else {
            return Err(v.err_at(
                segs,
                &format!("\"{term}\" must map to a non-empty string, as in \"先輩\" = \"senpai\""),
            ));
        };
        if term.trim().is_empty() {
            return Err(v.err_at(segs, "a glossary term cannot be empty"));
        }
        glossary.push(GlossaryEntry {
            source: term.trim().to_string(),
            target: target.to_string(),
            note: String::new(),
        });
    }
    Ok(glossary)
}

/// A `glossary_file` (at `key`), relative to the config's directory; its path is added to
/// `files`, read or not, so that creating a missing file is noticed too.
fn glossary_file(
    v: &Validator<'_>,
    name: &str,
    key: &[PathSeg],
    files: &mut Vec<PathBuf>,
) -> Result<Vec<GlossaryEntry>, ConfigError> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(Vec::new());
    }
    let file = v
        .path
        .parent()
        .map_or_else(|| PathBuf::from(name), |dir| dir.join(name));
    files.push(file.clone());
    let text = std::fs::read_to_string(&file)
        .map_err(|e| v.err_at(key, &format!("cannot read {}: {e}", file.display())))?;
    parse_glossary_tsv(&text).map_err(|(line, message)| ConfigError::Invalid {
        path: file.clone(),
        line: Some(line),
        key: "glossary_file".into(),
        message,
    })
}

/// `[lookahead]`: the script's path is resolved against the config file's directory (as a
/// `glossary_file` is) but not read here: a missing script only turns look-ahead off.
fn lookahead(v: &Validator<'_>, l: &RawLookahead) -> Result<LookaheadConfig, ConfigError> {
    let lines = v.int_range(l.lines, 1, 50, &["lookahead", "lines"])? as usize;
    if !(l.daily_share.is_finite() && (0.0..=1.0).contains(&l.daily_share)) {
        return Err(v.err(
            &["lookahead", "daily_share"],
            &format!("{} is out of range: must be 0.0 to 1.0", l.daily_share),
        ));
    }
    let script = match l.script.trim() {
        "" => None,
        name => Some(
            v.path
                .parent()
                .map_or_else(|| PathBuf::from(name), |dir| dir.join(name)),
        ),
    };
    Ok(LookaheadConfig {
        script,
        lines,
        daily_share: l.daily_share,
    })
}

/// The values `[log] level` takes.
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// `[intake]`: the WebSocket URL is held to the rule for provider URLs (`wss://`, or `ws://`
/// on loopback).
/// `game` must name one of the `[[games]]`.
fn intake(v: &Validator<'_>, i: &RawIntake, games: &Games) -> Result<IntakeConfig, ConfigError> {
    let game = match i.game.trim() {
        "" => None,
        name if games.get(name).is_some() => Some(name.to_string()),
        name => {
            let known = games.names().collect::<Vec<_>>().join(", ");
            let known = if known.is_empty() {
                "none".to_string()
            } else {
                known
            };
            return Err(v.err(
                &["intake", "game"],
                &format!("\"{name}\" is not the name of a [[games]] profile (known: {known})"),
            ));
        }
    };
    let url = i.websocket.trim();
    if url.is_empty() {
        return Ok(IntakeConfig {
            websocket: None,
            game,
        });
    }
    check_websocket_url(url).map_err(|e| v.err(&["intake", "websocket"], &e))?;
    Ok(IntakeConfig {
        websocket: Some(url.to_string()),
        game,
    })
}

fn check_websocket_url(url: &str) -> Result<(), String> {
    let as_http = if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else {
        return Err(format!(
            "\"{url}\" must start with wss:// (or ws:// for localhost / 127.0.0.1)"
        ));
    };
    check_base_url(&as_http).map_err(|e| {
        if e.ends_with("has no host") {
            format!("\"{url}\" has no host")
        } else {
            format!(
                "\"{url}\" must use wss:// (plain ws:// is allowed only for localhost / 127.0.0.1)"
            )
        }
    })
}

/// `https` required unless the host is loopback (a local Ollama or LM Studio).
pub fn check_base_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("\"{url}\" is not a URL (expected https://host/path)"))?;
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(format!("\"{url}\" has no host"));
    }
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "\"{url}\" must use https:// (plain http is allowed only for localhost / 127.0.0.1)"
        )),
        _ => Err(format!("\"{url}\" must start with https://")),
    }
}

// ---------------------------------------------------------------- locating keys and lines

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone)]
pub enum PathSeg {
    Key(&'static str),
    Index(usize),
}

impl From<&'static str> for PathSeg {
    fn from(k: &'static str) -> Self {
        PathSeg::Key(k)
    }
}
impl From<usize> for PathSeg {
    fn from(i: usize) -> Self {
        PathSeg::Index(i)
    }
}

fn path_string(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            PathSeg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Validator<'_> {
    fn err(&self, key: &[&'static str], message: &str) -> ConfigError {
        let segs: Vec<PathSeg> = key.iter().map(|k| PathSeg::Key(k)).collect();
        self.err_at(&segs, message)
    }

    fn err_at(&self, key: &[PathSeg], message: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line(key),
            key: path_string(key),
            message: message.to_string(),
        }
    }

    /// The line of `key` in the file, or of its nearest parent that is written there.
    fn line(&self, key: &[PathSeg]) -> Option<usize> {
        // Recoverable: the same text may hold the error being reported (a duplicate key).
        let (doc, _) = DeTable::parse_recoverable(self.text);
        let mut table: &DeTable<'_> = doc.get_ref();
        let mut best: Option<usize> = None;
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        for seg in key {
            let next = match (seg, value.map(|v| v.get_ref())) {
                (PathSeg::Key(k), None) => {
                    table.get_key_value(*k).map(|(k, v)| (k.span().start, v))
                }
                (PathSeg::Key(k), Some(DeValue::Table(t))) => {
                    t.get_key_value(*k).map(|(k, v)| (k.span().start, v))
                }
                (PathSeg::Index(i), Some(DeValue::Array(a))) => {
                    a.get(*i).map(|v| (v.span().start, v))
                }
                _ => None,
            };
            let Some((offset, v)) = next else { break };
            best = Some(line_of(self.text, offset));
            if let DeValue::Table(t) = v.get_ref() {
                table = t;
            }
            value = Some(v);
        }
        best
    }

    fn int_range(
        &self,
        value: i64,
        min: i64,
        max: i64,
        key: &[&'static str],
    ) -> Result<i64, ConfigError> {
        let segs: Vec<PathSeg> = key.iter().map(|k| PathSeg::Key(k)).collect();
        self.int_range_at(value, min, max, &segs)
    }

    fn int_range_at(
        &self,
        value: i64,
        min: i64,
        max: i64,
        key: &[PathSeg],
    ) -> Result<i64, ConfigError> {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(self.err_at(
                key,
                &format!("{value} is out of range: must be {min} to {max}"),
            ))
        }
    }

    fn secs(
        &self,
        value: f64,
        min: f64,
        max: f64,
        key: &[&'static str],
    ) -> Result<Duration, ConfigError> {
        let segs: Vec<PathSeg> = key.iter().map(|k| PathSeg::Key(k)).collect();
        self.secs_at(value, min, max, &segs)
    }

    fn secs_at(
        &self,
        value: f64,
        min: f64,
        max: f64,
        key: &[PathSeg],
    ) -> Result<Duration, ConfigError> {
        if value.is_finite() && (min..=max).contains(&value) {
            Ok(Duration::from_secs_f64(value))
        } else {
            Err(self.err_at(
                key,
                &format!("{value} is out of range: must be {min} to {max} seconds"),
            ))
        }
    }
}

/// serde's type names in words a user knows.
pub(super) fn friendly(message: &str) -> String {
    message
        .replace("expected f64", "expected a number")
        .replace("expected i64", "expected a whole number")
        .replace("expected a boolean", "expected true or false")
}

/// 1-based line of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// For a TOML syntax error (the text does not parse as TOML at all) at `offset`: the table
/// whose header is on that line (`[notify` unclosed names `notify`), else the key written at
/// the line's start under the nearest header above. None when the text is valid TOML, whose
/// errors are about values and are located by [`key_at`].
pub(super) fn key_of_syntax_error(text: &str, offset: usize) -> Option<String> {
    DeTable::parse(text).err()?;
    let line_start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?;
    let trimmed = line.trim_start();
    if let Some(header) = trimmed.strip_prefix('[') {
        let name = header
            .trim_start_matches('[')
            .split([']', '#', '\n'])
            .next()?
            .trim();
        return (!name.is_empty()).then(|| name.to_string());
    }
    key_by_header(text, line_start + (line.len() - trimmed.len()))
}

/// For an error whose key is not in the parsed table (a duplicate): the key written at
/// `offset`, under the nearest `[table]` header above it.
pub(super) fn key_by_header(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let key: String = text
        .get(offset..)?
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if key.is_empty() {
        return None;
    }
    let header = text[..offset]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match header {
        Some(h) if !h.is_empty() => format!("{h}.{key}"),
        _ => key,
    })
}

/// The dotted key path whose key or value covers `offset` (for serde's errors, which carry
/// only a span). Table spans cover only their headers, so every child is searched.
pub(super) fn key_at(text: &str, offset: usize) -> Option<String> {
    let (doc, _) = DeTable::parse_recoverable(text);
    let path = search_table(doc.get_ref(), offset)?;
    let mut s = String::new();
    for p in path {
        if !s.is_empty() && !p.starts_with('[') {
            s.push('.');
        }
        s.push_str(&p);
    }
    Some(s)
}

fn search_table(table: &DeTable<'_>, offset: usize) -> Option<Vec<String>> {
    for (k, v) in table.iter() {
        let name = k.get_ref().to_string();
        if let Some(mut inner) = search_value(v, offset) {
            inner.insert(0, name);
            return Some(inner);
        }
        if k.span().contains(&offset) || v.span().contains(&offset) {
            return Some(vec![name]);
        }
    }
    None
}

fn search_value(value: &Spanned<DeValue<'_>>, offset: usize) -> Option<Vec<String>> {
    match value.get_ref() {
        DeValue::Table(t) => search_table(t, offset),
        DeValue::Array(a) => a.iter().enumerate().find_map(|(i, item)| {
            let mut inner = search_value(item, offset)
                .or_else(|| item.span().contains(&offset).then(Vec::new))?;
            inner.insert(0, format!("[{i}]"));
            Some(inner)
        }),
        _ => None,
    }
}

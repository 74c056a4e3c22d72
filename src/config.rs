//! The config file: raw TOML (serde defaults, unknown keys refused) → a validated `Config`.
//! Every error names the file, the line and the key. Loading has no side effects.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::core::breaker::BreakerConfig;
use crate::core::gates::{GateConfig, GateConfigError, Gates};
use crate::core::memory::{Glossary, GlossaryEntry, parse_glossary_tsv};

/// The documented example; also what `yaku config init` writes.
pub const EXAMPLE: &str = include_str!("../config.example.toml");

/// Exit code for every configuration error (EX_CONFIG), so a service manager can stop retrying.
pub const EXIT_CONFIG: i32 = 78;

/// A configuration problem, always with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}{}: {key}: {message}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("no config directory could be found: set $HOME, or pass --config PATH")]
    NoConfigDir,
}

/// Where the config file is: `--config`, else `$YAKU_CONFIG`, else the platform config dir.
pub fn config_path(cli: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(p) = cli {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("YAKU_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    directories::ProjectDirs::from("", "", "yaku")
        .map(|d| d.config_dir().join("config.toml"))
        .ok_or(ConfigError::NoConfigDir)
}

// ---------------------------------------------------------------- raw: what the file may say

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    translation: RawTranslation,
    breaker: RawBreaker,
    clipboard: RawClipboard,
    notify: RawNotify,
    log: RawLog,
    glossary: toml::Table,
    cache: RawCache,
    history: RawHistory,
    store: RawStore,
    #[serde(default = "default_providers")]
    providers: Vec<RawProvider>,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            translation: RawTranslation::default(),
            breaker: RawBreaker::default(),
            clipboard: RawClipboard::default(),
            notify: RawNotify::default(),
            log: RawLog::default(),
            glossary: toml::Table::new(),
            cache: RawCache::default(),
            history: RawHistory::default(),
            store: RawStore::default(),
            providers: default_providers(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCache {
    enabled: bool,
}

impl Default for RawCache {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHistory {
    max_rows: i64,
    max_days: i64,
}

impl Default for RawHistory {
    fn default() -> Self {
        Self {
            max_rows: 100_000,
            max_days: 0,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawClipboard {
    poll_interval_ms: i64,
    collapse_repeats: bool,
    min_chars: i64,
    max_chars: i64,
    min_script_ratio: f64,
    require_script: bool,
    ignore: Vec<String>,
}

impl Default for RawClipboard {
    fn default() -> Self {
        Self {
            poll_interval_ms: 250,
            collapse_repeats: true,
            min_chars: 1,
            max_chars: 500,
            min_script_ratio: 0.3,
            require_script: true,
            ignore: vec!["^https?://".into()],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNotify {
    enabled: bool,
    timeout_ms: i64,
    show_original: bool,
}

impl Default for RawNotify {
    fn default() -> Self {
        Self {
            enabled: true,
            timeout_ms: 8000,
            show_original: true,
        }
    }
}

/// How often the log file starts anew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    Hourly,
    Daily,
    Never,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: String,
    dir: String,
    rotation: Rotation,
    keep_files: i64,
    include_text: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: "info".into(),
            dir: String::new(),
            rotation: Rotation::Daily,
            keep_files: 7,
            include_text: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTranslation {
    source_language: String,
    target_language: String,
    options: i64,
    instructions: String,
    deadline_secs: f64,
    context_lines: i64,
    context_reset_secs: f64,
    glossary_file: String,
}

impl Default for RawTranslation {
    fn default() -> Self {
        Self {
            source_language: "Japanese".into(),
            target_language: "English".into(),
            options: 3,
            instructions: String::new(),
            deadline_secs: 20.0,
            context_lines: 4,
            context_reset_secs: 600.0,
            glossary_file: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBreaker {
    failures_to_open: i64,
    open_secs: f64,
    max_open_secs: f64,
}

impl Default for RawBreaker {
    fn default() -> Self {
        Self {
            failures_to_open: 3,
            open_secs: 30.0,
            max_open_secs: 900.0,
        }
    }
}

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Google Gemini `generateContent`.
    Gemini,
    /// Any OpenAI-compatible chat completions API (Groq, OpenRouter, Ollama, LM Studio).
    Openai,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    kind: ProviderKind,
    model: String,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default = "default_rpm")]
    requests_per_minute: i64,
    #[serde(default)]
    requests_per_day: i64,
    #[serde(default = "default_timeout")]
    timeout_secs: f64,
    #[serde(default = "default_true")]
    json_mode: bool,
    #[serde(default)]
    extra: Option<toml::Table>,
}

fn default_rpm() -> i64 {
    10
}
fn default_timeout() -> f64 {
    15.0
}
fn default_true() -> bool {
    true
}

fn default_providers() -> Vec<RawProvider> {
    let mut gemini_extra = toml::Table::new();
    let mut thinking = toml::Table::new();
    thinking.insert("thinkingLevel".into(), "minimal".into());
    gemini_extra.insert("thinkingConfig".into(), toml::Value::Table(thinking));
    let mut groq_extra = toml::Table::new();
    groq_extra.insert("reasoning_effort".into(), "low".into());
    vec![
        RawProvider {
            name: "gemini".into(),
            kind: ProviderKind::Gemini,
            model: "gemini-3.5-flash-lite".into(),
            base_url: Some(GEMINI_BASE_URL.into()),
            api_key_env: Some("GEMINI_API_KEY".into()),
            api_key: None,
            requests_per_minute: 10,
            requests_per_day: 0,
            timeout_secs: 15.0,
            json_mode: true,
            extra: Some(gemini_extra),
        },
        RawProvider {
            name: "groq".into(),
            kind: ProviderKind::Openai,
            model: "openai/gpt-oss-120b".into(),
            base_url: Some("https://api.groq.com/openai/v1".into()),
            api_key_env: Some("GROQ_API_KEY".into()),
            api_key: None,
            requests_per_minute: 30,
            requests_per_day: 1000,
            timeout_secs: 15.0,
            json_mode: true,
            extra: Some(groq_extra),
        },
    ]
}

const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

// ---------------------------------------------------------------- validated: what the code uses

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, when one existed.
    pub source: Option<PathBuf>,
    /// The path it was loaded from (whether or not a file was there); the credentials file
    /// lives beside it.
    pub path: PathBuf,
    pub translation: TranslationConfig,
    pub breaker: BreakerConfig,
    pub providers: Vec<ProviderConfig>,
    pub clipboard: ClipboardConfig,
    pub notify: NotifyConfig,
    pub log: LogConfig,
    pub memory: MemoryConfig,
}

/// Context, glossary, cache, history and store settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    /// Previous accepted lines sent as context (0 = none).
    pub context_lines: usize,
    /// The context is forgotten after this long without a line.
    pub context_reset: Duration,
    /// `[glossary]` entries, then the `glossary_file` ones.
    pub glossary: Glossary,
    pub cache_enabled: bool,
    /// 0 = no limit.
    pub history_max_rows: u64,
    /// 0 = keep for ever.
    pub history_max_days: u64,
    /// Empty in the file: the platform data dir (`~/.local/share/yaku/yaku.db`).
    pub store_path: Option<PathBuf>,
}

/// `[clipboard]`: polling, cleaning and the privacy gates.
#[derive(Debug, Clone)]
pub struct ClipboardConfig {
    pub poll_interval: Duration,
    pub collapse_repeats: bool,
    /// The gates' settings, checked by building `Gates` once at load.
    pub gates: GateConfig,
}

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    pub enabled: bool,
    /// How long a notification stays; 0 leaves it to the notification server.
    pub timeout_ms: u32,
    pub show_original: bool,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A tracing filter such as "info" or "yaku=debug"; `YAKU_LOG` overrides it.
    pub level: String,
    /// Empty: the platform default (`$XDG_STATE_HOME/yaku/logs` on Linux).
    pub dir: Option<PathBuf>,
    pub rotation: Rotation,
    pub keep_files: usize,
    /// Whether accepted lines and their translations are written to the log.
    pub include_text: bool,
}

/// `[translation]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslationConfig {
    pub source_language: String,
    pub target_language: String,
    /// 1..=5 alternatives, best first.
    pub options: u8,
    pub instructions: String,
    /// One deadline per line, across every attempt and provider.
    pub deadline: Duration,
}

/// One `[[providers]]` entry.
#[derive(Clone, PartialEq)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub model: String,
    pub base_url: String,
    pub api_key_env: Option<String>,
    /// A key written in the config file itself; used only when the file is private.
    pub api_key: Option<String>,
    /// 0 = no per-minute limit.
    pub requests_per_minute: u32,
    /// 0 = no daily cap.
    pub requests_per_day: u32,
    pub timeout: Duration,
    pub json_mode: bool,
    pub extra: serde_json::Value,
    /// Line of `api_key` in the file, to point at it when the file is not private.
    api_key_line: Option<usize>,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key_env", &self.api_key_env)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Loads `path`; a missing file means the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file_err = |message: String| ConfigError::File {
            path: path.to_path_buf(),
            message,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Config::from_raw(RawConfig::default(), "", path, false);
            }
            Err(e) if path.is_dir() => {
                return Err(file_err(format!("is a directory, not a config file ({e})")));
            }
            Err(e) => return Err(file_err(format!("cannot be read: {e}"))),
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            file_err(format!(
                "line {line}: not UTF-8 text; save the file as UTF-8"
            ))
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text that came from `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            let key = offset
                .and_then(|o| {
                    key_at(text, o)
                        .filter(|k| !k.is_empty())
                        .or_else(|| key_by_header(text, o))
                })
                .unwrap_or_default();
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line: offset.map(|o| line_of(text, o)),
                key: if key.is_empty() {
                    "(document)".into()
                } else {
                    key
                },
                message: friendly(e.message().trim()),
            }
        })?;
        Config::from_raw(raw, text, path, true)
    }

    /// The defaults, as if no file existed.
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::from_raw(RawConfig::default(), "", Path::new("(defaults)"), false)
    }

    fn from_raw(
        raw: RawConfig,
        text: &str,
        path: &Path,
        exists: bool,
    ) -> Result<Config, ConfigError> {
        let v = Validator { text, path };
        let t = &raw.translation;
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
        let b = &raw.breaker;
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

        if raw.providers.is_empty() {
            return Err(v.err(&["providers"], "at least one [[providers]] entry is needed"));
        }
        let mut providers: Vec<ProviderConfig> = Vec::with_capacity(raw.providers.len());
        for (i, p) in raw.providers.into_iter().enumerate() {
            let at = |key: &'static str| -> Vec<PathSeg> {
                vec!["providers".into(), i.into(), key.into()]
            };
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
            if providers.iter().any(|q| q.name == name) {
                return Err(v.err_at(
                    &at("name"),
                    &format!("\"{name}\" is used by an earlier provider; names must be unique"),
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
            let rpd =
                v.int_range_at(p.requests_per_day, 0, 10_000_000, &at("requests_per_day"))? as u32;
            let timeout = v.secs_at(p.timeout_secs, 1.0, 600.0, &at("timeout_secs"))?;
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
            providers.push(ProviderConfig {
                name,
                kind: p.kind,
                model: p.model.trim().to_string(),
                base_url,
                api_key_env,
                api_key,
                requests_per_minute: rpm,
                requests_per_day: rpd,
                timeout,
                json_mode: p.json_mode,
                extra,
                api_key_line,
            });
        }

        let c = &raw.clipboard;
        let poll_interval = Duration::from_millis(v.int_range(
            c.poll_interval_ms,
            20,
            10_000,
            &["clipboard", "poll_interval_ms"],
        )? as u64);
        let min_chars = v.int_range(c.min_chars, 1, 100_000, &["clipboard", "min_chars"])? as usize;
        let max_chars = v.int_range(c.max_chars, 1, 100_000, &["clipboard", "max_chars"])? as usize;
        if max_chars < min_chars {
            return Err(v.err(&["clipboard", "max_chars"], "must be at least `min_chars`"));
        }
        if !(0.0..=1.0).contains(&c.min_script_ratio) {
            return Err(v.err(
                &["clipboard", "min_script_ratio"],
                &format!("{} is out of range: must be 0.0 to 1.0", c.min_script_ratio),
            ));
        }
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
        Gates::new(gates.clone()).map_err(|e| match e {
            GateConfigError::UnsupportedLanguage { .. } => {
                v.err(&["translation", "source_language"], &e.to_string())
            }
            other => v.err(&["clipboard"], &other.to_string()),
        })?;
        let n = &raw.notify;
        let timeout_ms = v.int_range(n.timeout_ms, 0, 600_000, &["notify", "timeout_ms"])? as u32;
        let l = &raw.log;
        if tracing_subscriber::EnvFilter::try_new(&l.level).is_err() || l.level.trim().is_empty() {
            return Err(v.err(
                &["log", "level"],
                &format!(
                    "\"{}\" is not a log level (error, warn, info, debug, trace)",
                    l.level
                ),
            ));
        }
        let keep_files = v.int_range(l.keep_files, 1, 10_000, &["log", "keep_files"])? as usize;

        let context_lines =
            v.int_range(t.context_lines, 0, 50, &["translation", "context_lines"])? as usize;
        let context_reset = v.secs(
            t.context_reset_secs,
            1.0,
            86_400.0,
            &["translation", "context_reset_secs"],
        )?;
        let mut glossary = Vec::new();
        for (term, rendering) in &raw.glossary {
            let Some(target) = rendering.as_str().map(str::trim).filter(|t| !t.is_empty()) else {
                let segs: Vec<PathSeg> = vec!["glossary".into()];
                return Err(v.err_at(
                    &segs,
                    &format!(
                        "\"{term}\" must map to a non-empty string, as in \"先輩\" = \"senpai\""
                    ),
                ));
            };
            if term.trim().is_empty() {
                return Err(v.err(&["glossary"], "a glossary term cannot be empty"));
            }
            glossary.push(GlossaryEntry {
                source: term.trim().to_string(),
                target: target.to_string(),
                note: String::new(),
            });
        }
        let glossary_file = t.glossary_file.trim();
        if !glossary_file.is_empty() {
            let file = path.parent().map_or_else(
                || PathBuf::from(glossary_file),
                |dir| dir.join(glossary_file),
            );
            let text = std::fs::read_to_string(&file).map_err(|e| {
                v.err(
                    &["translation", "glossary_file"],
                    &format!("cannot read {}: {e}", file.display()),
                )
            })?;
            let entries =
                parse_glossary_tsv(&text).map_err(|(line, message)| ConfigError::Invalid {
                    path: file.clone(),
                    line: Some(line),
                    key: "glossary_file".into(),
                    message,
                })?;
            glossary.extend(entries);
        }
        let max_rows =
            v.int_range(raw.history.max_rows, 0, i64::MAX, &["history", "max_rows"])? as u64;
        let max_days =
            v.int_range(raw.history.max_days, 0, 100_000, &["history", "max_days"])? as u64;
        let memory = MemoryConfig {
            context_lines,
            context_reset,
            glossary: Glossary::new(glossary),
            cache_enabled: raw.cache.enabled,
            history_max_rows: max_rows,
            history_max_days: max_days,
            store_path: Some(raw.store.path.trim())
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
        };

        Ok(Config {
            source: exists.then(|| path.to_path_buf()),
            path: path.to_path_buf(),
            memory,
            clipboard: ClipboardConfig {
                poll_interval,
                collapse_repeats: c.collapse_repeats,
                gates,
            },
            notify: NotifyConfig {
                enabled: n.enabled,
                timeout_ms,
                show_original: n.show_original,
            },
            log: LogConfig {
                level: l.level.trim().to_string(),
                dir: Some(l.dir.trim())
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from),
                rotation: l.rotation,
                keep_files,
                include_text: l.include_text,
            },
            translation: TranslationConfig {
                source_language: t.source_language.trim().to_string(),
                target_language: t.target_language.trim().to_string(),
                options,
                instructions: t.instructions.trim().to_string(),
                deadline,
            },
            breaker: BreakerConfig {
                failures_to_open,
                open,
                max_open,
            },
            providers,
        })
    }
}

/// `https` required unless the host is loopback (a local Ollama or LM Studio).
fn check_base_url(url: &str) -> Result<(), String> {
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

// ---------------------------------------------------------------- keys

/// Where a provider's key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The environment variable named by `api_key_env`.
    Env(String),
    /// `api_key` in the config file.
    ConfigFile,
    /// `credentials.toml`, written by `yaku key set`.
    Credentials,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env(var) => write!(f, "environment variable {var}"),
            KeySource::ConfigFile => f.write_str("api_key in the config file"),
            KeySource::Credentials => f.write_str("credentials file (yaku key set)"),
        }
    }
}

/// The result of looking up a provider's key.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyLookup {
    Found {
        key: String,
        source: KeySource,
    },
    /// The provider needs no key (a keyless local server).
    NotNeeded,
    /// No key was found; `hint` says how to give one.
    Missing {
        hint: String,
    },
}

impl fmt::Debug for KeyLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyLookup::Found { source, .. } => write!(f, "Found({source:?})"),
            KeyLookup::NotNeeded => f.write_str("NotNeeded"),
            KeyLookup::Missing { hint } => write!(f, "Missing({hint:?})"),
        }
    }
}

impl ProviderConfig {
    /// Looks the key up: the `api_key_env` variable, then the credentials file (`yaku key
    /// set`), then `api_key` in the config file, which is refused (a config error) when the
    /// file is readable by group or others.
    pub fn key(
        &self,
        env: impl Fn(&str) -> Option<String>,
        credentials: &crate::credentials::Credentials,
        config_file: Option<&Path>,
    ) -> Result<KeyLookup, ConfigError> {
        if let Some(var) = &self.api_key_env
            && let Some(key) = env(var)
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
        {
            return Ok(KeyLookup::Found {
                key,
                source: KeySource::Env(var.clone()),
            });
        }
        if let Some(key) = credentials.get(&self.name) {
            return Ok(KeyLookup::Found {
                key: key.trim().to_string(),
                source: KeySource::Credentials,
            });
        }
        if let Some(key) = &self.api_key {
            if let Some(path) = config_file {
                check_private(path).map_err(|message| ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line: self.api_key_line,
                    key: format!("providers.{}.api_key", self.name),
                    message,
                })?;
            }
            return Ok(KeyLookup::Found {
                key: key.trim().to_string(),
                source: KeySource::ConfigFile,
            });
        }
        match &self.api_key_env {
            Some(var) => Ok(KeyLookup::Missing {
                hint: format!(
                    "run `yaku key set {}` (or set {var} in the environment yaku runs in)",
                    self.name
                ),
            }),
            None if self.kind == ProviderKind::Gemini => Ok(KeyLookup::Missing {
                hint: format!("run `yaku key set {}`", self.name),
            }),
            None => Ok(KeyLookup::NotNeeded),
        }
    }

    /// What to tell a user whose key was rejected.
    pub fn key_advice(&self, source: Option<&KeySource>) -> String {
        match source {
            Some(KeySource::Env(var)) => format!("the key was rejected: check {var}"),
            Some(KeySource::ConfigFile) => {
                "the key was rejected: check `api_key` in the config".into()
            }
            Some(KeySource::Credentials) | None => {
                format!("the key was rejected: run `yaku key set {}`", self.name)
            }
        }
    }
}

/// Refuses a file that group or others may read, as OpenSSH does for private keys.
#[cfg(unix)]
pub fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot check permissions: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "holds an API key but is readable by others (mode {mode:03o}); run `chmod 600 {}`",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check_private(_path: &Path) -> Result<(), String> {
    Ok(())
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
fn friendly(message: &str) -> String {
    message
        .replace("expected f64", "expected a number")
        .replace("expected i64", "expected a whole number")
        .replace("expected a boolean", "expected true or false")
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// For an error whose key is not in the parsed table (a duplicate): the key written at
/// `offset`, under the nearest `[table]` header above it.
fn key_by_header(text: &str, offset: usize) -> Option<String> {
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
fn key_at(text: &str, offset: usize) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_is_exactly_the_defaults() {
        let example = Config::parse(EXAMPLE, Path::new("config.example.toml")).unwrap();
        let defaults = Config::defaults().unwrap();
        assert_eq!(example.translation, defaults.translation);
        assert_eq!(example.breaker, defaults.breaker);
        assert_eq!(example.providers, defaults.providers);
        assert_eq!(example.notify, defaults.notify);
        assert_eq!(example.log, defaults.log);
        assert_eq!(example.memory, defaults.memory);
        assert!(defaults.memory.glossary.is_empty());
        assert_eq!(
            example.clipboard.poll_interval,
            defaults.clipboard.poll_interval
        );
        assert_eq!(
            example.clipboard.collapse_repeats,
            defaults.clipboard.collapse_repeats
        );
        let (e, d) = (&example.clipboard.gates, &defaults.clipboard.gates);
        assert_eq!(
            (
                e.min_chars,
                e.max_chars,
                e.min_script_ratio,
                e.require_script
            ),
            (
                d.min_chars,
                d.max_chars,
                d.min_script_ratio,
                d.require_script
            )
        );
        let patterns = |g: &GateConfig| {
            g.ignore
                .iter()
                .map(|r| r.as_str().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(patterns(e), patterns(d));
        assert_eq!(patterns(d), vec!["^https?://"]);
        assert_eq!(defaults.providers.len(), 2);
        assert_eq!(
            defaults.providers[0].extra,
            serde_json::json!({"thinkingConfig": {"thinkingLevel": "minimal"}})
        );
    }

    #[test]
    fn an_empty_file_means_the_defaults() {
        let c = Config::parse("", Path::new("c.toml")).unwrap();
        assert_eq!(c.providers, Config::defaults().unwrap().providers);
        assert_eq!(c.translation.deadline, Duration::from_secs(20));
    }

    #[test]
    fn base_url_rules_table() {
        for (url, ok) in [
            ("https://api.groq.com/openai/v1", true),
            ("http://127.0.0.1:11434/v1", true),
            ("http://localhost:1234/v1", true),
            ("http://[::1]:8080/v1", true),
            ("http://192.168.1.5:11434/v1", false),
            ("http://api.example.com/v1", false),
            ("ftp://example.com", false),
            ("example.com/v1", false),
            ("https:///v1", false),
        ] {
            assert_eq!(check_base_url(url).is_ok(), ok, "{url}");
        }
    }

    #[test]
    fn key_lookup_prefers_the_environment_then_the_file() {
        let text = "[[providers]]\nname = \"g\"\nkind = \"gemini\"\nmodel = \"m\"\napi_key_env = \"G_KEY\"\napi_key = \"from-file\"\n";
        let c = Config::parse(text, Path::new("c.toml")).unwrap();
        let p = &c.providers[0];
        let none = crate::credentials::Credentials::default();
        let found = p
            .key(
                |v| (v == "G_KEY").then(|| "from-env".to_string()),
                &none,
                None,
            )
            .unwrap();
        assert_eq!(
            found,
            KeyLookup::Found {
                key: "from-env".into(),
                source: KeySource::Env("G_KEY".into())
            }
        );
        let found = p.key(|_| None, &none, None).unwrap();
        assert_eq!(
            found,
            KeyLookup::Found {
                key: "from-file".into(),
                source: KeySource::ConfigFile
            }
        );
        assert!(
            !format!("{p:?}").contains("from-file"),
            "Debug never shows a key"
        );

        let keyless = "[[providers]]\nname = \"o\"\nkind = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:11434/v1\"\n";
        let c = Config::parse(keyless, Path::new("c.toml")).unwrap();
        assert_eq!(
            c.providers[0].key(|_| None, &none, None).unwrap(),
            KeyLookup::NotNeeded
        );
        let missing = "[[providers]]\nname = \"o\"\nkind = \"openai\"\nmodel = \"m\"\nbase_url = \"https://x.example/v1\"\napi_key_env = \"O_KEY\"\n";
        let c = Config::parse(missing, Path::new("c.toml")).unwrap();
        assert!(matches!(
            c.providers[0].key(|_| None, &none, None).unwrap(),
            KeyLookup::Missing { .. }
        ));
    }
}

//! What the file may say: serde mirrors of each table, with the one set of defaults.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    pub(super) translation: RawTranslation,
    pub(super) breaker: RawBreaker,
    pub(super) connections: RawConnections,
    pub(super) clipboard: RawClipboard,
    pub(super) notify: RawNotify,
    pub(super) log: RawLog,
    pub(super) glossary: toml::Table,
    pub(super) cache: RawCache,
    pub(super) history: RawHistory,
    pub(super) store: RawStore,
    pub(super) intake: RawIntake,
    pub(super) lookahead: RawLookahead,
    #[serde(default = "default_providers")]
    pub(super) providers: Vec<RawProvider>,
    pub(super) games: Vec<RawGame>,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            translation: RawTranslation::default(),
            breaker: RawBreaker::default(),
            connections: RawConnections::default(),
            clipboard: RawClipboard::default(),
            notify: RawNotify::default(),
            log: RawLog::default(),
            glossary: toml::Table::new(),
            cache: RawCache::default(),
            history: RawHistory::default(),
            store: RawStore::default(),
            intake: RawIntake::default(),
            lookahead: RawLookahead::default(),
            providers: default_providers(),
            games: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCache {
    pub(super) enabled: bool,
}

impl Default for RawCache {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHistory {
    pub(super) max_rows: i64,
    pub(super) max_days: i64,
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
pub(super) struct RawIntake {
    /// A text hooker's WebSocket to take lines from; empty: none.
    pub(super) websocket: String,
    /// The `[[games]]` profile of the WebSocket's lines; empty: the active window's.
    pub(super) game: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLookahead {
    /// The game's script (plain text or GalTransl JSON); empty: no look-ahead.
    pub(super) script: String,
    pub(super) lines: i64,
    pub(super) daily_share: f64,
}

impl Default for RawLookahead {
    fn default() -> Self {
        Self {
            script: String::new(),
            lines: 5,
            daily_share: 0.5,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    pub(super) path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawClipboard {
    pub(super) watch: Watch,
    pub(super) poll_interval_ms: i64,
    pub(super) collapse_repeats: bool,
    pub(super) min_chars: i64,
    pub(super) max_chars: i64,
    pub(super) min_script_ratio: f64,
    pub(super) require_script: bool,
    pub(super) ignore: Vec<String>,
}

impl Default for RawClipboard {
    fn default() -> Self {
        Self {
            watch: Watch::Auto,
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
pub(super) struct RawNotify {
    pub(super) enabled: bool,
    pub(super) timeout_ms: i64,
    pub(super) show_original: bool,
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

/// How yaku learns that the clipboard changed (`[clipboard] watch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Watch {
    /// Change events where the platform has them (X11's XFixes), polling elsewhere.
    Auto,
    /// Change events only: without them the clipboard is not read, and `yaku check` says why.
    Events,
    /// Read the clipboard every `poll_interval_ms`.
    Poll,
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
pub(super) struct RawLog {
    pub(super) level: String,
    pub(super) dir: String,
    pub(super) rotation: Rotation,
    pub(super) keep_files: i64,
    pub(super) include_text: bool,
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
pub(super) struct RawTranslation {
    pub(super) source_language: String,
    pub(super) target_language: String,
    pub(super) options: i64,
    pub(super) instructions: String,
    pub(super) deadline_secs: f64,
    pub(super) context_lines: i64,
    pub(super) context_reset_secs: f64,
    pub(super) glossary_file: String,
    pub(super) reply_checks: bool,
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
            reply_checks: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawBreaker {
    pub(super) failures_to_open: i64,
    pub(super) open_secs: f64,
    pub(super) max_open_secs: f64,
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

/// `[connections]`: warm provider connections (`core::warm`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConnections {
    pub(super) keep_warm: bool,
    pub(super) warm_every_secs: f64,
    pub(super) idle_after_secs: f64,
}

impl Default for RawConnections {
    fn default() -> Self {
        Self {
            keep_warm: true,
            warm_every_secs: 45.0,
            idle_after_secs: 1800.0,
        }
    }
}

/// One `[[games]]` profile: `name` and `match` are required, every other key overrides the
/// global value for that game's lines.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGame {
    pub(super) name: String,
    #[serde(rename = "match")]
    pub(super) matcher: String,
    #[serde(default)]
    pub(super) glossary_file: Option<String>,
    #[serde(default)]
    pub(super) glossary: Option<toml::Table>,
    #[serde(default)]
    pub(super) instructions: Option<String>,
    #[serde(default)]
    pub(super) source_language: Option<String>,
    #[serde(default)]
    pub(super) context_lines: Option<i64>,
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
pub(super) struct RawProvider {
    pub(super) name: String,
    pub(super) kind: ProviderKind,
    pub(super) model: String,
    #[serde(default)]
    pub(super) base_url: Option<String>,
    #[serde(default)]
    pub(super) api_key_env: Option<String>,
    #[serde(default)]
    pub(super) api_key: Option<String>,
    #[serde(default = "default_rpm")]
    pub(super) requests_per_minute: i64,
    #[serde(default)]
    pub(super) requests_per_day: i64,
    #[serde(default)]
    pub(super) tokens_per_minute: i64,
    #[serde(default = "default_timeout")]
    pub(super) timeout_secs: f64,
    #[serde(default)]
    pub(super) hedge_after_ms: i64,
    #[serde(default = "default_true")]
    pub(super) json_mode: bool,
    #[serde(default)]
    pub(super) extra: Option<toml::Table>,
}

pub(super) fn default_rpm() -> i64 {
    10
}
pub(super) fn default_timeout() -> f64 {
    15.0
}
pub(super) fn default_true() -> bool {
    true
}

pub(super) fn default_providers() -> Vec<RawProvider> {
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
            tokens_per_minute: 0,
            timeout_secs: 15.0,
            hedge_after_ms: 0,
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
            tokens_per_minute: 0,
            timeout_secs: 15.0,
            hedge_after_ms: 0,
            json_mode: true,
            extra: Some(groq_extra),
        },
    ]
}

pub(super) const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

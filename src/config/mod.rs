//! The config file: raw TOML (serde defaults, unknown keys refused) → a validated `Config`.
//! Every error names the file, the line and the key. Loading has no side effects.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::breaker::BreakerConfig;
use crate::core::games::Games;
use crate::core::gates::GateConfig;
use crate::core::memory::Glossary;
use crate::sys::dirs::Dirs;

/// The documented example; also what `yaku config init` writes.
pub const EXAMPLE: &str = include_str!("../../config.example.toml");

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
    crate::sys::dirs::Dirs::resolve()
        .map(|d| d.config_file())
        .map_err(|_| ConfigError::NoConfigDir)
}

pub mod credentials;
mod keys;
mod raw;
mod validate;

pub use keys::{KeyLookup, KeySource};
use raw::RawConfig;
pub use raw::{ProviderKind, Rotation, Watch};
pub use validate::check_base_url;
use validate::{friendly, key_at, key_by_header, key_of_syntax_error, line_of};

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
    pub connections: ConnectionsConfig,
    pub providers: Vec<ProviderConfig>,
    pub clipboard: ClipboardConfig,
    pub notify: NotifyConfig,
    pub log: LogConfig,
    pub context: ContextConfig,
    pub store: StoreConfig,
    /// `[[games]]`: per-game profiles, chosen by the active window.
    pub games: Games,
    /// Every glossary file the config names (global and per game), as read: a change to any
    /// of them reloads the config.
    pub glossary_files: Vec<PathBuf>,
    pub intake: IntakeConfig,
    pub lookahead: LookaheadConfig,
}

/// `[lookahead]`: translating the next lines of the game's script before they are copied.
#[derive(Debug, Clone, PartialEq)]
pub struct LookaheadConfig {
    /// The script file, relative paths resolved against the config file's directory; None:
    /// look-ahead is off. Read when the daemon starts or reloads (a missing file is a
    /// warning, not an error).
    pub script: Option<PathBuf>,
    /// How many lines ahead are kept ready (one batch asks for at most this many).
    pub lines: usize,
    /// The most of any provider's daily budget look-ahead may use (0.0 to 1.0).
    pub daily_share: f64,
}

/// `[connections]`: the providers' connections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionsConfig {
    /// `keep_warm`: how the daemon keeps each provider's connection open; None: it does not.
    pub keep_warm: Option<crate::core::warm::WarmConfig>,
}

/// `[intake]`: where lines come from besides the clipboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeConfig {
    /// A text hooker's WebSocket (`ws://` on loopback or `wss://`); None: not used.
    pub websocket: Option<String>,
    /// `game`: the `[[games]]` profile of the WebSocket's lines; None: the active window's.
    pub game: Option<String>,
}

/// What travels with each line besides its text: the context and the glossary.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextConfig {
    /// Previous accepted lines sent as context (0 = none).
    pub lines: usize,
    /// The context is forgotten after this long without a line.
    pub reset: Duration,
    /// `[glossary]` entries, then the `glossary_file` ones.
    pub glossary: Glossary,
}

/// `[cache]`, `[history]` and `[store]`: what is kept on disk and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub cache_enabled: bool,
    /// 0 = no limit.
    pub history_max_rows: u64,
    /// 0 = keep for ever.
    pub history_max_days: u64,
    /// Empty in the file: the platform data dir (`~/.local/share/yaku/yaku.db`).
    pub path: Option<PathBuf>,
}

/// `[clipboard]`: polling, cleaning and the privacy gates.
#[derive(Debug, Clone)]
pub struct ClipboardConfig {
    pub watch: Watch,
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
    /// Whether each reply's options are checked for content (untranslated, repetitive, echo,
    /// refusal, duplicate) before they are shown; the reply contract is checked regardless.
    pub reply_checks: bool,
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
    /// 0 = no token budget; requests are estimated conservatively from their size.
    pub tokens_per_minute: u32,
    pub timeout: Duration,
    /// `hedge_after_ms`: with no answer by then, the next provider is asked too; zero = never.
    pub hedge_after: Duration,
    pub json_mode: bool,
    pub extra: serde_json::Value,
    /// Line of `api_key` in the file, to point at it when the file is not private.
    pub(crate) api_key_line: Option<usize>,
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
                    key_of_syntax_error(text, o).or_else(|| {
                        key_at(text, o)
                            .filter(|k| !k.is_empty())
                            .or_else(|| key_by_header(text, o))
                    })
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

    /// Where the log files go: `[log] dir`, else the platform's.
    pub fn log_dir(&self, dirs: &Dirs) -> PathBuf {
        self.log.dir.clone().unwrap_or_else(|| dirs.logs())
    }

    /// The history store's file: `[store] path`, else the platform data dir.
    pub fn store_path(&self, dirs: &Dirs) -> PathBuf {
        self.store.path.clone().unwrap_or_else(|| dirs.store_file())
    }

    /// The defaults, as if no file existed.
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::from_raw(RawConfig::default(), "", Path::new("(defaults)"), false)
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
        assert_eq!(example.connections, defaults.connections);
        assert_eq!(example.providers, defaults.providers);
        assert_eq!(example.notify, defaults.notify);
        assert_eq!(example.log, defaults.log);
        assert_eq!(example.context, defaults.context);
        assert_eq!(example.store, defaults.store);
        assert_eq!(example.intake, defaults.intake);
        assert_eq!(example.lookahead, defaults.lookahead);
        assert!(defaults.context.glossary.is_empty());
        assert!(example.games.is_empty() && defaults.games.is_empty());
        assert_eq!(
            example.clipboard.poll_interval,
            defaults.clipboard.poll_interval
        );
        assert_eq!(example.clipboard.watch, defaults.clipboard.watch);
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
    fn games_profiles_are_read_with_their_overrides_and_glossary_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sakura.tsv"), "桜\tSakura\n").unwrap();
        let text = "[glossary]\n\"先輩\" = \"senpai\"\n\n\
            [[games]]\nname = \"sakura\"\nmatch = \"(?i)sakura\"\nglossary_file = \"sakura.tsv\"\n\
            instructions = \" Keep -san. \"\nsource_language = \"Chinese\"\ncontext_lines = 2\n\
            [games.glossary]\n\"先輩\" = \"Okabe\"\n\n\
            [[games]]\nname = \"plain\"\nmatch = \"^plain$\"\n";
        let path = dir.path().join("config.toml");
        let c = Config::parse(text, &path).unwrap();
        assert_eq!(c.games.names().collect::<Vec<_>>(), ["sakura", "plain"]);
        let sakura = c.games.get("sakura").unwrap();
        let terms: Vec<(String, String)> = sakura
            .glossary
            .as_ref()
            .unwrap()
            .applicable("先輩と桜", &[])
            .into_iter()
            .map(|e| (e.source, e.target))
            .collect();
        assert_eq!(
            terms,
            [
                ("先輩".into(), "Okabe".into()),
                ("桜".into(), "Sakura".into())
            ],
            "the game's glossary replaces the global one"
        );
        assert_eq!(sakura.instructions.as_deref(), Some("Keep -san."));
        assert_eq!(sakura.source_language.as_deref(), Some("Chinese"));
        assert_eq!(sakura.context_lines, Some(2));
        let plain = c.games.get("plain").unwrap();
        assert!(plain.glossary.is_none() && plain.instructions.is_none());
        assert_eq!(c.glossary_files, vec![dir.path().join("sakura.tsv")]);
    }

    #[test]
    fn bad_games_entries_are_refused_naming_the_key_and_line() {
        let game = |body: &str| format!("[translation]\noptions = 3\n\n[[games]]\n{body}");
        for (body, key, line, says) in [
            ("match = \"x\"\n", "games", Some(4), "missing field `name`"),
            ("name = \"a\"\n", "games", Some(4), "missing field `match`"),
            (
                "name = \"a\"\nmatch = \"(unclosed\"\n",
                "games[0].match",
                Some(6),
                "not a valid regular expression",
            ),
            (
                "name = \"a\"\nmatch = \"  \"\n",
                "games[0].match",
                Some(6),
                "must be a regular expression",
            ),
            (
                "name = \" \"\nmatch = \"x\"\n",
                "games[0].name",
                Some(5),
                "must name the game",
            ),
            (
                "name = \"a\"\nmatch = \"x\"\n[[games]]\nname = \"a\"\nmatch = \"y\"\n",
                "games[1].name",
                Some(8),
                "names must be unique",
            ),
            (
                "name = \"a\"\nmatch = \"x\"\ncontext_lines = 51\n",
                "games[0].context_lines",
                Some(7),
                "out of range",
            ),
            (
                "name = \"a\"\nmatch = \"x\"\nsource_language = \"Klingon\"\n",
                "games[0].source_language",
                Some(7),
                "Klingon",
            ),
            (
                "name = \"a\"\nmatch = \"x\"\nglossary_file = \"missing.tsv\"\n",
                "games[0].glossary_file",
                Some(7),
                "cannot read",
            ),
            (
                "name = \"a\"\nmatch = \"x\"\ncolour = \"red\"\n",
                "games",
                None,
                "unknown field `colour`",
            ),
            (
                "name = \"a\"\nmatch = \"x\"\n[games.glossary]\n\"先輩\" = 1\n",
                "games[0].glossary",
                Some(7),
                "non-empty string",
            ),
        ] {
            let text = game(body);
            let err = Config::parse(&text, Path::new("/nonexistent/c.toml")).unwrap_err();
            let ConfigError::Invalid {
                key: k,
                line: l,
                message,
                ..
            } = &err
            else {
                panic!("{body}: {err}");
            };
            assert!(k.starts_with(key), "{body}: key {k}, want {key}");
            if line.is_some() {
                assert_eq!(*l, line, "{body}: {err}");
            }
            assert!(err.to_string().contains(says), "{body}: {err} ({message})");
        }
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
        let none = crate::config::credentials::Credentials::default();
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

    #[test]
    fn the_websocket_url_must_be_wss_or_ws_on_loopback_and_watch_one_of_three_names() {
        let parse = |t: &str| Config::parse(t, Path::new("c.toml"));
        for (url, ok) in [
            ("ws://127.0.0.1:6677", true),
            ("ws://localhost:6677/lines", true),
            ("ws://[::1]:6677", true),
            ("wss://hooker.example:443", true),
            ("ws://192.168.1.5:6677", false),
            ("http://127.0.0.1:6677", false),
            ("ws://", false),
        ] {
            let c = parse(&format!("[intake]\nwebsocket = \"{url}\"\n"));
            assert_eq!(c.is_ok(), ok, "{url}: {c:?}");
            if let Err(e) = c {
                assert!(e.to_string().contains("websocket"), "{e}");
            }
        }
        assert_eq!(parse("").unwrap().intake.websocket, None);
        assert_eq!(parse("").unwrap().clipboard.watch, Watch::Auto);
        let c = parse("[clipboard]\nwatch = \"events\"\n").unwrap();
        assert_eq!(c.clipboard.watch, Watch::Events);
        assert!(parse("[clipboard]\nwatch = \"xfixes\"\n").is_err());
    }

    #[test]
    fn the_intake_game_must_name_a_games_profile() {
        let parse = |t: &str| Config::parse(t, Path::new("c.toml"));
        let games = "[[games]]\nname = \"sakura\"\nmatch = \"^sakura\"\n";
        let c = parse(&format!("[intake]\ngame = \"sakura\"\n{games}")).unwrap();
        assert_eq!(c.intake.game.as_deref(), Some("sakura"));
        assert_eq!(parse(games).unwrap().intake.game, None);
        let e = parse(&format!("[intake]\ngame = \"steins\"\n{games}")).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("intake.game") || e.contains("game"), "{e}");
        assert!(e.contains("known: sakura"), "{e}");
        let e = parse("[intake]\ngame = \"sakura\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("known: none"), "{e}");
    }
}

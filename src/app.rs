//! The composition root: the one place where the config, the adapters and the core are wired
//! together, and where errors become exit codes.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use serde_json::json;

use crate::adapters::{self, gemini::Gemini, openai::OpenAi};
use crate::cli::{
    Cli, Command, ConfigCommand, HistoryAction, HistoryArgs, KeyCommand, ServiceCommand,
    TranslateArgs,
};
use crate::config::{self, Config, ConfigError, KeyLookup, ProviderKind};
use crate::core::chain::{
    Chain, ChainConfig, ChainEntry, ChainFailure, SkipReason, Skipped, Translation,
};
use crate::core::clock::{Clock, TokioClock};
use crate::core::memory::cache_key;
use crate::core::prompt::TranslationRequest;
use crate::core::provider::Provider;
use crate::core::ratelimit::RateLimit;
use crate::core::store::{CachedAnswer, Finished, Source, Status, Store};
use crate::credentials::Credentials;

/// Exit codes beyond 0 (success) and 2 (usage, from clap).
pub mod exit {
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NO_PROVIDER: u8 = 3;
    pub const CONFIG: u8 = super::config::EXIT_CONFIG as u8;
}

/// A usage error found after parsing (an unknown provider name, nothing to translate).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// Every provider failed for the line; the details were already printed.
#[derive(Debug, thiserror::Error)]
#[error("no provider could translate the line")]
pub struct NoProvider;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run) {
        init_logging();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = exit_code(&err);
            if err.downcast_ref::<CheckFailed>().is_some() {
                // The report already said why.
            } else if err.downcast_ref::<NotRunning>().is_some() {
                eprintln!("{err}");
            } else if code != exit::NO_PROVIDER {
                eprintln!("yaku: {err:#}");
            }
            ExitCode::from(code)
        }
    }
}

fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<ConfigError>().is_some() {
        exit::CONFIG
    } else if err.downcast_ref::<UsageError>().is_some() {
        exit::USAGE
    } else if err.downcast_ref::<NoProvider>().is_some() {
        exit::NO_PROVIDER
    } else {
        exit::FAILURE
    }
}

/// Logs go to stderr, filtered by `YAKU_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("YAKU_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let path = config::config_path(cli.config.as_deref())?;
    match cli.command {
        Command::Config(ConfigCommand::Path) => {
            println!("{}", path.display());
            Ok(())
        }
        Command::Config(ConfigCommand::Init { force }) => config_init(&path, force),
        Command::Service(cmd) => {
            let config = Config::load(&path)?;
            service_command(&config, cmd)
        }
        Command::Key(cmd) => {
            let config = Config::load(&path)?;
            key_command(&config, cmd)
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "yaku", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .context("cannot write the man page")?;
            Ok(())
        }
        Command::Setup => crate::setup::run(&path),
        Command::Assets { dir, binary } => write_assets(&dir, &binary),
        Command::Status { json: as_json } => control_status(as_json),
        Command::Check {
            json: as_json,
            offline,
        } => check(&path, as_json, offline),
        Command::Pause { duration } => {
            let for_secs = match duration.as_deref() {
                Some(d) => Some(
                    crate::adapters::http::parse_duration(d)
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| {
                            UsageError(format!(
                                "\"{d}\" is not a duration such as 10m, 90s or 1h30m"
                            ))
                        })?
                        .as_secs_f64(),
                ),
                None => None,
            };
            let v = control_request(json!({ "cmd": "pause", "for_secs": for_secs }))?;
            match v["paused_for_secs"].as_u64() {
                Some(secs) => println!(
                    "paused for {}",
                    crate::core::chain::human_duration(std::time::Duration::from_secs(secs))
                ),
                None => println!("paused until `yaku resume`"),
            }
            Ok(())
        }
        Command::Resume => {
            control_request(json!({ "cmd": "resume" }))?;
            println!("resumed: reading the clipboard again");
            Ok(())
        }
        Command::Reload => {
            control_request(json!({ "cmd": "reload" }))?;
            println!("reloaded the config");
            Ok(())
        }
        Command::History(args) => {
            let config = Config::load(&path)?;
            history_command(&config, args)
        }
        Command::Stats {
            json: as_json,
            since,
        } => {
            let config = Config::load(&path)?;
            stats_command(&config, as_json, &since)
        }
        Command::Logs { follow } => {
            let config = Config::load(&path)?;
            crate::run::logs(&config, follow)
        }
        Command::Run => {
            let config = Config::load(&path)?;
            crate::run::run(&config)
        }
        Command::Translate(args) => {
            let config = Config::load(&path)?;
            translate(&config, args)
        }
    }
}

fn config_init(path: &Path, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        anyhow::bail!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_private(path, config::EXAMPLE.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Creates `dir` (and its parents) with mode 0700 where it is new.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `bytes` to `path` as a 0600 file, replacing any content.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        // An existing file keeps its old mode through open(): tighten it.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(bytes)?;
    f.sync_all()
}

/// Builds the chain the config describes. Providers without a key are listed as unusable.
pub fn build_chain(
    config: &Config,
    credentials: &Credentials,
    clock: Arc<dyn Clock>,
) -> Result<Chain, ConfigError> {
    let env = |var: &str| std::env::var(var).ok();
    let mut entries = Vec::with_capacity(config.providers.len());
    for p in &config.providers {
        let limit = RateLimit::new(p.requests_per_minute, p.requests_per_day, clock.clone());
        let (api_key, source) = match p.key(env, credentials, config.source.as_deref())? {
            KeyLookup::Found { key, source } => (Some(key), Some(source)),
            KeyLookup::NotNeeded => (None, None),
            KeyLookup::Missing { hint } => {
                tracing::debug!(provider = %p.name, "skipped: no API key ({hint})");
                let reason = Skipped {
                    provider: p.name.clone(),
                    reason: SkipReason::NoKey,
                    retry_after: None,
                    daily: false,
                    detail: "no API key".into(),
                    advice: hint,
                };
                entries.push(ChainEntry::unusable(&p.name, reason, limit));
                continue;
            }
        };
        let provider = build_provider(p, api_key).map_err(|e| http_setup_error(&p.name, &e))?;
        entries.push(ChainEntry::new(
            provider,
            config.breaker,
            limit,
            p.key_advice(source.as_ref()),
        ));
    }
    let cfg = ChainConfig {
        deadline: config.translation.deadline,
        ..ChainConfig::default()
    };
    Ok(Chain::new(entries, clock, cfg))
}

/// The adapter for one configured provider, with its key.
pub fn build_provider(
    p: &crate::config::ProviderConfig,
    api_key: Option<String>,
) -> Result<Arc<dyn Provider>, reqwest::Error> {
    let settings = adapters::Settings {
        name: p.name.clone(),
        model: p.model.clone(),
        base_url: p.base_url.clone(),
        api_key,
        timeout: p.timeout,
        extra: p.extra.clone(),
        json_mode: p.json_mode,
    };
    Ok(match p.kind {
        ProviderKind::Gemini => Arc::new(Gemini::new(settings)?),
        ProviderKind::Openai => Arc::new(OpenAi::new(settings)?),
    })
}

fn http_setup_error(name: &str, e: &reqwest::Error) -> ConfigError {
    ConfigError::File {
        path: "(providers)".into(),
        message: format!("provider \"{name}\": the HTTP client could not be set up: {e}"),
    }
}

/// The request for one line under this config.
pub fn request_for(config: &Config, text: &str) -> TranslationRequest {
    TranslationRequest {
        text: text.to_string(),
        source_language: config.translation.source_language.clone(),
        target_language: config.translation.target_language.clone(),
        options: config.translation.options,
        instructions: config.translation.instructions.clone(),
        ..Default::default()
    }
}

fn translate(config: &Config, args: TranslateArgs) -> anyhow::Result<()> {
    let text = match args.text.as_deref() {
        Some(t) if t != "-" => t.to_string(),
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read standard input")?;
            s
        }
    };
    let text = text.trim();
    // The clipboard's length limit holds here too: a file piped in by mistake is not sent.
    let max = config.clipboard.gates.max_chars;
    if text.chars().nth(max).is_some() {
        return Err(UsageError(format!(
            "the text is longer than {max} characters (`[clipboard] max_chars`); nothing was sent"
        ))
        .into());
    }
    if text.is_empty() {
        return Err(UsageError(
            "nothing to translate: pass the text as an argument or on standard input".into(),
        )
        .into());
    }
    if let Some(name) = &args.provider
        && !config.providers.iter().any(|p| &p.name == name)
    {
        let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        return Err(UsageError(format!(
            "no provider named \"{name}\"; configured: {}",
            names.join(", ")
        ))
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Key files are checked first, so a file others can read is refused even for a cached line.
    let credentials = Credentials::load(&Credentials::path_for(&config.path))?;
    let mut request = request_for(config, text);
    request.glossary = config.memory.glossary.applicable(text, &[]);
    // History and cache are a convenience here: without the store the line is still translated.
    let store = match open_store_for_command(config) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("translating without history and cache: {e:#}");
            None
        }
    };
    let key = config.memory.cache_enabled.then(|| {
        cache_key(
            text,
            &request.source_language,
            &request.target_language,
            request.options,
            &request.instructions,
            &request.glossary,
        )
    });
    let cached = match (&store, &key) {
        (Some(st), Some(k)) if !args.fresh && args.provider.is_none() => {
            st.cache_get(k).ok().flatten()
        }
        _ => None,
    };
    let row = store.as_ref().and_then(|st| {
        st.begin(text, Source::Cli, std::time::SystemTime::now())
            .ok()
    });
    let finish = |status: Status,
                  t: Option<&Translation>,
                  error: Option<String>,
                  attempts: &[crate::core::store::AttemptRecord]| {
        if let (Some(st), Some(id)) = (&store, row) {
            let f = Finished::of(status, t, error);
            if let Err(e) = st.finish(id, &f, attempts) {
                tracing::warn!("history not updated: {e}");
            }
        }
    };
    let result = if let Some(answer) = cached {
        let t = Translation::from(answer);
        finish(Status::Cached, Some(&t), None, &[]);
        eprintln!("from the cache ({})", t.provider);
        Ok(t)
    } else {
        let result = runtime.block_on(async {
            let chain = build_chain(config, &credentials, Arc::new(TokioClock))?;
            Ok::<_, ConfigError>(chain.translate(&request, args.provider.as_deref()).await)
        })?;
        match &result {
            Ok(t) => {
                finish(Status::Translated, Some(t), None, &t.attempts);
                if let (Some(st), Some(k)) = (&store, &key) {
                    let answer = CachedAnswer {
                        options: t.options.clone(),
                        provider: t.provider.clone(),
                        model: t.model.clone(),
                    };
                    if let Err(e) = st.cache_put(k, &answer) {
                        tracing::warn!("cache not updated: {e}");
                    }
                }
            }
            Err(f) => {
                let reasons: Vec<String> = f
                    .skipped
                    .iter()
                    .map(|s| format!("{}: {}", s.provider, s.summary()))
                    .collect();
                finish(Status::Failed, None, Some(reasons.join("; ")), &f.attempts);
            }
        }
        result
    };
    let mut out = std::io::stdout().lock();
    match result {
        Ok(t) => {
            if args.json {
                writeln!(out, "{}", translation_json(text, &t))?;
            } else {
                write_plain(&mut out, &t)?;
                if !t.attempts.is_empty() {
                    eprintln!("{}", via_line(&t));
                }
            }
            Ok(())
        }
        Err(failure) => {
            if args.json {
                writeln!(out, "{}", failure_json(text, &failure))?;
            }
            eprintln!("yaku: no provider could translate this line:");
            for s in &failure.skipped {
                eprintln!("  {}", describe(s));
            }
            Err(NoProvider.into())
        }
    }
}

fn write_plain(out: &mut impl Write, t: &Translation) -> std::io::Result<()> {
    for (i, option) in t.options.iter().enumerate() {
        if i == 0 {
            writeln!(out, "{option}")?;
        } else {
            writeln!(out, "  {}. {option}", i + 1)?;
        }
    }
    Ok(())
}

/// `via groq in 812 ms (gemini: rate limited for 37 s)`.
pub fn via_line(t: &Translation) -> String {
    let mut line = format!("via {} in {} ms", t.provider, t.latency.as_millis());
    if !t.skipped.is_empty() {
        let why: Vec<String> = t
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.provider, s.summary()))
            .collect();
        line.push_str(&format!(" ({})", why.join("; ")));
    }
    line
}

/// `gemini: rate limited for 37 s — wait, or add another provider to the chain`.
pub fn describe(s: &Skipped) -> String {
    if s.advice.is_empty() {
        format!("{}: {}", s.provider, s.summary())
    } else {
        format!("{}: {} — {}", s.provider, s.summary(), s.advice)
    }
}

fn skipped_json(skipped: &[Skipped]) -> serde_json::Value {
    skipped
        .iter()
        .map(|s| {
            json!({
                "provider": s.provider,
                "reason": s.reason.as_str(),
                "retry_after_ms": s.retry_after.map(|d| d.as_millis() as u64),
            })
        })
        .collect()
}

pub fn translation_json(text: &str, t: &Translation) -> serde_json::Value {
    json!({
        "text": text,
        "best": t.options.first(),
        "options": t.options,
        "provider": t.provider,
        "skipped": skipped_json(&t.skipped),
        "latency_ms": t.latency.as_millis() as u64,
    })
}

pub fn failure_json(text: &str, f: &ChainFailure) -> serde_json::Value {
    json!({
        "text": text,
        "best": null,
        "options": [],
        "provider": null,
        "skipped": skipped_json(&f.skipped),
        "latency_ms": f.latency.as_millis() as u64,
    })
}

fn key_command(config: &Config, cmd: KeyCommand) -> anyhow::Result<()> {
    let cred_path = Credentials::path_for(&config.path);
    let known = |name: &str| config.providers.iter().any(|p| p.name == name);
    match cmd {
        KeyCommand::Set { name } => {
            if !known(&name) {
                let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
                return Err(UsageError(format!(
                    "no provider named \"{name}\"; configured: {}",
                    names.join(", ")
                ))
                .into());
            }
            let key = read_secret(&format!("API key for {name}: "))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(UsageError("no key given: nothing was stored".into()).into());
            }
            Credentials::store(&cred_path, &name, Some(key))?;
            println!("stored the key for {name} in {}", cred_path.display());
            Ok(())
        }
        KeyCommand::Remove { name } => {
            Credentials::store(&cred_path, &name, None)?;
            println!(
                "removed any stored key for {name} from {}",
                cred_path.display()
            );
            Ok(())
        }
        KeyCommand::List { json: as_json } => {
            let credentials = Credentials::load(&cred_path)?;
            let env = |var: &str| std::env::var(var).ok();
            let mut rows = Vec::new();
            for p in &config.providers {
                let (found, source) = match p.key(env, &credentials, config.source.as_deref()) {
                    Ok(KeyLookup::Found { source, .. }) => (true, source.to_string()),
                    Ok(KeyLookup::NotNeeded) => (true, "no key needed".to_string()),
                    Ok(KeyLookup::Missing { hint }) => (false, format!("missing — {hint}")),
                    Err(e) => (false, format!("refused — {e}")),
                };
                rows.push((p.name.clone(), found, source));
            }
            if as_json {
                let v: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(name, found, source)| json!({ "provider": name, "found": found, "source": source }))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for (name, found, source) in rows {
                    println!("{name:<12} {:<4} {source}", if found { "ok" } else { "--" });
                }
            }
            Ok(())
        }
    }
}

/// Reads a secret: without echo when standard input is a terminal, else one line of stdin.
fn read_secret(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the key from standard input")?;
        return Ok(line);
    }
    // Echo goes off before the prompt appears, so a fast typist's key is never shown.
    let _echo = crate::setup::NoEcho::new();
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    eprintln!();
    read.context("cannot read the key")?;
    Ok(line)
}

/// The daemon is not running (exit 1 with that message).
#[derive(Debug, thiserror::Error)]
#[error("yaku is not running")]
pub struct NotRunning;

fn control_request(req: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let dirs = crate::run::Dirs::resolve()?;
    match crate::control::request(&crate::control::socket_path(&dirs.runtime), &req) {
        Ok(v) => Ok(v),
        Err(crate::control::ControlError::NotRunning) => Err(NotRunning.into()),
        Err(e) => Err(e.into()),
    }
}

fn control_status(as_json: bool) -> anyhow::Result<()> {
    let mut v = control_request(json!({ "cmd": "status" }))?;
    if let Some(obj) = v.as_object_mut() {
        obj.remove("ok");
    }
    if as_json {
        println!("{v}");
        return Ok(());
    }
    let secs = |v: &serde_json::Value| {
        v.as_u64()
            .map(|s| crate::core::chain::human_duration(std::time::Duration::from_secs(s)))
    };
    println!(
        "yaku is running (pid {}, up {})",
        v["pid"],
        secs(&v["uptime_secs"]).unwrap_or_default()
    );
    match (v["paused"].as_bool(), secs(&v["paused_for_secs"])) {
        (Some(true), Some(left)) => println!("paused: the clipboard is not read for {left} more"),
        (Some(true), None) => println!("paused: the clipboard is not read until `yaku resume`"),
        _ => println!("watching the clipboard"),
    }
    let l = &v["lines"];
    println!(
        "lines: {} accepted, {} translated, {} from the cache, {} failed, {} skipped; queue {}",
        l["accepted"], l["translated"], l["cached"], l["failed"], l["skipped"], v["queue"]
    );
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

/// At least one provider cannot translate: exit 1 after the report.
#[derive(Debug, thiserror::Error)]
#[error("no provider can translate")]
pub struct CheckFailed;

fn check(path: &Path, as_json: bool, offline: bool) -> anyhow::Result<()> {
    use crate::check;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let config = Config::load(path);
    let mut report = serde_json::Map::new();
    let mut lines: Vec<String> = Vec::new();
    let mut can_translate = false;
    match &config {
        Ok(c) => {
            let where_ = c.source.as_ref().map_or_else(
                || format!("{} (not found: defaults)", path.display()),
                |p| p.display().to_string(),
            );
            report.insert(
                "config".into(),
                json!({ "ok": true, "path": path, "detail": where_ }),
            );
            lines.push(format!("config: ok — {where_}"));
        }
        Err(e) => {
            report.insert(
                "config".into(),
                json!({ "ok": false, "path": path, "detail": e.to_string() }),
            );
            lines.push(format!("config: error — {e}"));
        }
    }
    if let Ok(config) = &config {
        let credentials = Credentials::load(&Credentials::path_for(&config.path));
        let credentials = match credentials {
            Ok(c) => c,
            Err(e) => {
                lines.push(format!("credentials: error — {e}"));
                Credentials::default()
            }
        };
        let checks = runtime.block_on(async {
            let mut out = Vec::new();
            for p in &config.providers {
                out.push(check::check_provider(p, config, &credentials, offline).await);
            }
            out
        });
        can_translate = checks.iter().any(|c| c.usable(offline));
        for c in &checks {
            lines.push(format!("{}: {}", c.name, c.message));
        }
        report.insert(
            "providers".into(),
            checks.iter().map(check::ProviderCheck::to_json).collect(),
        );
        let dirs = crate::run::Dirs::resolve();
        if let Ok(dirs) = &dirs {
            let logs = check::check_log_dir(&dirs.log_dir(&config.log));
            lines.push(format!(
                "log dir: {} — {}",
                logs["path"].as_str().unwrap_or(""),
                logs["detail"].as_str().unwrap_or("")
            ));
            report.insert("log_dir".into(), logs);
        }
        if let Ok(store_path) = crate::run::store_path(config) {
            let store = check::check_store(&store_path);
            lines.push(format!(
                "history store: {} — {}",
                store_path.display(),
                store["detail"].as_str().unwrap_or("")
            ));
            report.insert("store".into(), store);
        }
    }
    let clipboard = runtime.block_on(check::check_clipboard());
    lines.push(format!(
        "clipboard: {}",
        clipboard["detail"].as_str().unwrap_or("")
    ));
    report.insert("clipboard".into(), clipboard);
    let notifications = runtime.block_on(check::check_notifications());
    lines.push(format!(
        "notifications: {}",
        notifications["detail"].as_str().unwrap_or("")
    ));
    report.insert("notifications".into(), notifications);
    if let Ok(c) = &config {
        let service = crate::run::Dirs::resolve()
            .map_err(|e| e.to_string())
            .and_then(|dirs| {
                let binary = std::env::current_exe().map_err(|e| e.to_string())?;
                crate::service::ServiceEnv::from_process(binary, dirs.log_dir(&c.log))
                    .map_err(|e| e.to_string())
            })
            .and_then(|env| crate::service::status(&env).map_err(|e| e.to_string()));
        match service {
            Ok(st) => {
                let summary = match st.entries.first() {
                    None => "not installed (`yaku service install`)".to_string(),
                    Some(e) => format!(
                        "{} — enabled: {}, running: {}{}",
                        e.kind,
                        e.enabled
                            .map_or("unknown", |b| if b { "yes" } else { "no" }),
                        e.running
                            .map_or("unknown", |b| if b { "yes" } else { "no" }),
                        if e.points_here {
                            ""
                        } else {
                            "; points at another binary: run `yaku service install`"
                        }
                    ),
                };
                lines.push(format!("service: {summary}"));
                report.insert("service".into(), st.to_json());
            }
            Err(e) => {
                lines.push(format!("service: unknown — {e}"));
                report.insert("service".into(), json!({ "installed": null, "error": e }));
            }
        }
    }
    let daemon = match control_request(json!({ "cmd": "status" })) {
        Ok(v) => json!({ "running": true, "pid": v["pid"], "paused": v["paused"] }),
        Err(_) => json!({ "running": false, "pid": null, "paused": null }),
    };
    lines.push(match daemon["pid"].as_u64() {
        Some(pid) => format!("daemon: running (pid {pid})"),
        None => "daemon: not running".to_string(),
    });
    report.insert("daemon".into(), daemon);
    report.insert("can_translate".into(), can_translate.into());
    if as_json {
        println!("{}", serde_json::Value::Object(report));
    } else {
        for l in &lines {
            println!("{l}");
        }
    }
    if can_translate {
        Ok(())
    } else {
        Err(CheckFailed.into())
    }
}

fn service_command(config: &Config, cmd: ServiceCommand) -> anyhow::Result<()> {
    use crate::service;
    let binary = std::env::current_exe().context("cannot find this program's path")?;
    let log_dir = crate::run::Dirs::resolve()?.log_dir(&config.log);
    let env = service::ServiceEnv::from_process(binary, log_dir)?;
    match cmd {
        ServiceCommand::Install => {
            let report = service::install(&env)?;
            println!("{}", report.render());
            for warning in key_warnings(config)? {
                eprintln!("warning: {warning}");
            }
            Ok(())
        }
        ServiceCommand::Uninstall => {
            println!("{}", service::uninstall(&env)?.render());
            Ok(())
        }
        ServiceCommand::Status { json: as_json } => {
            let status = service::status(&env)?;
            if as_json {
                println!("{}", status.to_json());
            } else {
                println!("{}", status.render());
            }
            Ok(())
        }
    }
}

/// Providers whose key only this shell's environment holds: a login service will not see it.
pub fn key_warnings(config: &Config) -> anyhow::Result<Vec<String>> {
    let credentials = Credentials::load(&Credentials::path_for(&config.path))?;
    let env = |var: &str| std::env::var(var).ok();
    let mut out = Vec::new();
    for p in &config.providers {
        if let Ok(KeyLookup::Found {
            source: config::KeySource::Env(var),
            ..
        }) = p.key(env, &credentials, config.source.as_deref())
        {
            let no_env = |_: &str| None;
            let elsewhere = matches!(
                p.key(no_env, &credentials, config.source.as_deref()),
                Ok(KeyLookup::Found { .. })
            );
            if !elsewhere {
                out.push(format!(
                    "{}'s key is only in this shell's {var}; the login service will not see it. \
                     Run `yaku key set {}` to store it where the service can read it.",
                    p.name, p.name
                ));
            }
        }
    }
    Ok(out)
}

/// The files a package installs beside the binary, all generated from this build.
fn write_assets(dir: &Path, binary: &Path) -> anyhow::Result<()> {
    use clap_complete::Shell;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
        Ok(())
    };
    let mut man = Vec::new();
    clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut man)?;
    write("yaku.1", &man)?;
    for (shell, name) in [
        (Shell::Bash, "yaku.bash"),
        (Shell::Zsh, "_yaku"),
        (Shell::Fish, "yaku.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(
            shell,
            &mut <Cli as clap::CommandFactory>::command(),
            "yaku",
            &mut out,
        );
        write(name, &out)?;
    }
    let unit = crate::service::render_systemd_unit(binary);
    // The packaged unit is enabled by each user, not written by `yaku service install`.
    let unit = match unit.split_once('\n') {
        Some((first, rest)) if first.starts_with('#') => format!(
            "# Installed by the yaku package. Enable it for your session with:\n#   systemctl --user enable --now yaku.service\n{rest}"
        ),
        _ => unit,
    };
    write("yaku.service", unit.as_bytes())
}

/// Opens the history store for a command that may run beside a live daemon: no integrity
/// scan (the daemon did it) and pending rows left alone (they may be the daemon's line).
fn open_store_for_command(config: &Config) -> anyhow::Result<crate::adapters::store::SqliteStore> {
    use crate::adapters::store::{Options, SqliteStore};
    let path = crate::run::store_path(config)?;
    let opts = Options {
        quick_check: false,
        recover_pending: false,
        ..Options::default()
    };
    let (store, _) = SqliteStore::open_with(&path, &opts)
        .with_context(|| format!("cannot open the history store {}", path.display()))?;
    Ok(store)
}

fn history_command(config: &Config, args: HistoryArgs) -> anyhow::Result<()> {
    use crate::adapters::store::ExportFormat;
    let store = open_store_for_command(config)?;
    match args.action {
        Some(HistoryAction::Export { format, output }) => {
            let format = ExportFormat::parse(&format)
                .ok_or_else(|| UsageError(format!("unknown format \"{format}\"")))?;
            let count = match &output {
                Some(path) => {
                    let mut file = std::io::BufWriter::new(
                        std::fs::File::create(path)
                            .with_context(|| format!("cannot create {}", path.display()))?,
                    );
                    let n = store.export(format, &mut file)?;
                    file.flush()?;
                    n
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    store.export(format, &mut out)?
                }
            };
            if let Some(path) = output {
                eprintln!("exported {count} lines to {}", path.display());
            }
            Ok(())
        }
        Some(HistoryAction::Clear { yes }) => {
            if !yes {
                return Err(UsageError(
                    "this deletes every history line: pass --yes to confirm".into(),
                )
                .into());
            }
            let n = store.clear()?;
            println!("deleted {n} history lines (the cache is kept)");
            Ok(())
        }
        None => {
            let rows = store.history(args.n, args.grep.as_deref())?;
            let mut out = std::io::stdout().lock();
            for row in rows {
                if args.json {
                    writeln!(out, "{}", row.to_json())?;
                } else {
                    let at = row.to_json()["at"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(19)
                        .collect::<String>()
                        .replace('T', " ");
                    let who = row.provider.as_deref().unwrap_or("-");
                    let result = match (&row.best, &row.error) {
                        (Some(best), _) => best.clone(),
                        (None, Some(e)) => e.clone(),
                        (None, None) => String::new(),
                    };
                    writeln!(
                        out,
                        "{at}  {:<11} {who:<8} {}  →  {result}",
                        row.status.as_str(),
                        row.text
                    )?;
                }
            }
            Ok(())
        }
    }
}

fn stats_command(config: &Config, as_json: bool, since: &str) -> anyhow::Result<()> {
    let since = match since {
        "all" => None,
        s => {
            let days = s.strip_suffix('d').and_then(|n| n.parse::<u64>().ok());
            let d = days
                .map(|n| std::time::Duration::from_secs(n * 86_400))
                .or_else(|| crate::adapters::http::parse_duration(s))
                .ok_or_else(|| {
                    UsageError(format!(
                        "--since \"{s}\" is not a duration such as 24h, 7d or all"
                    ))
                })?;
            Some(std::time::SystemTime::now() - d)
        }
    };
    let store = open_store_for_command(config)?;
    let stats = store.stats(since)?;
    if as_json {
        println!("{}", stats.to_json());
    } else {
        print!("{}", crate::adapters::store::render_table(&stats));
    }
    Ok(())
}

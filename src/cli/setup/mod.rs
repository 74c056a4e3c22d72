//! `yaku setup`: the interactive first run. It says what leaves the machine, asks for the
//! languages, decides which config will be in force, tests and stores each key (as `yaku check`
//! and `yaku key set` do), writes the config, offers the login service and translates the
//! first copied line. Every step has a non-interactive command; the wizard prints them.
//!
//! Decisions worth knowing:
//! - Without a terminal on both standard input and output it refuses (exit 1) and lists the
//!   non-interactive commands instead.
//! - Declining the privacy confirmation changes nothing and exits 0.
//! - Whether an existing config is overwritten is asked right after the languages, before the
//!   keys, so the keys are tested against the providers that will actually be in force.
//! - A typed key is tested before it is stored, on its own (`api_key_env` and `api_key` are
//!   ignored for the test, so a key in the environment cannot make a bad typed key look good).
//!   It is stored (as `yaku key set` stores it) only if it worked (or was rate limited: the
//!   provider accepted it), or if the provider failed for another reason than the key and the
//!   user chose to store it anyway. A rejected key never reaches the disk, so an interrupted
//!   wizard cannot leave one behind; Enter after a rejection skips the provider, leaving any
//!   key stored earlier as it was. The user is told when an environment variable will take
//!   precedence over the stored key.
//! - Logs are silenced while the wizard talks (it reports every outcome itself) unless
//!   `YAKU_LOG` is set.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};

use super::probe::{ProviderCheck, check_provider};
use crate::adapters::notify::DesktopNotifier;
use crate::config::credentials::Credentials;
use crate::config::{self, Config, ConfigError, KeyLookup, ProviderConfig};
use crate::core::chain::{Chain, ChainFailure, Translation};
use crate::core::clock::TokioClock;
use crate::core::daemon::Notifier;
use crate::core::gates::{GateConfig, Gates};
use crate::core::intake::{
    ChangeDetector, ClipEvent, ClipboardSource, Intake, WatchControl, intake, watch_from,
};
use crate::core::line::{Accepted, CacheUse, Lines};
use crate::core::store::Source;
use crate::sys::terminal::{NoEcho, stdin_ready};

/// How long step 6 waits for a newly copied line.
pub const FIRST_LINE_WAIT: Duration = Duration::from_secs(120);

/// How long the first clipboard read and the notification may take.
const QUICK: Duration = Duration::from_secs(3);

/// The wizard's conversation with the user: a terminal in `yaku setup`, a script in tests.
pub trait Io {
    /// Shows `prompt` and reads one line (without its line ending); `None` at end of input.
    fn read_line(&mut self, prompt: &str) -> io::Result<Option<String>>;
    /// Like `read_line`, but what is typed is not echoed.
    fn read_secret(&mut self, prompt: &str) -> io::Result<Option<String>>;
    /// Writes `text` as it is (the caller adds line endings).
    fn write(&mut self, text: &str) -> io::Result<()>;
    /// Whether Enter was pressed (or input ended) since the last read; never blocks. The line
    /// typed is consumed.
    fn enter_pressed(&mut self) -> io::Result<bool>;
}

/// Runs the wizard on this process's terminal; refuses without one.
pub fn run(config_path: &Path) -> anyhow::Result<()> {
    if !(io::stdin().is_terminal() && io::stdout().is_terminal()) {
        anyhow::bail!(
            "`yaku setup` asks questions, so it needs a terminal on standard input and output.\n\
             Without one, each step has its own command:\n{}",
            next_commands(config_path, &provider_names_needing_keys(config_path)).trim_end()
        );
    }
    let mut io = TerminalIo::new();
    if std::env::var_os("YAKU_LOG").is_some() {
        run_with(&mut io, config_path)
    } else {
        let quiet = tracing::subscriber::NoSubscriber::default();
        tracing::subscriber::with_default(quiet, || run_with(&mut io, config_path))
    }
}

/// The wizard itself, on any [`Io`].
pub fn run_with<I: Io>(io: &mut I, config_path: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;

    // What is there now (nothing is changed before the user has confirmed).
    let existing: Option<Result<Config, ConfigError>> =
        config_path.exists().then(|| Config::load(config_path));

    // 1. What is sent, and where.
    if !welcome(io, &existing)? {
        return Ok(());
    }

    // 2. Languages, and which config will be in force.
    let existing_ok = match &existing {
        Some(Ok(c)) => Some(c),
        _ => None,
    };
    let mut chosen = languages(io, config_path, existing_ok)?;
    let example = chosen.example.take();
    let plan = plan(io, config_path, existing, example, &chosen.source)?;
    let plan = choose_providers(io, config_path, plan)?;
    let config: &Config = match &plan {
        Plan::Write { config, .. } | Plan::Keep { config } => config,
    };

    // 3. Keys, each tested at once.
    say(io, "")?;
    let cred_path = Credentials::path_for(config_path);
    let mut usable = runtime.block_on(keys(io, config, &cred_path))?;

    // 4. The config file.
    say(io, "")?;
    match &plan {
        Plan::Write {
            text, overwrite, ..
        } => write_config(io, config_path, text, *overwrite, config)?,
        Plan::Keep { config } => kept(io, config_path, config, &chosen)?,
    }

    // 5. The login service.
    say(io, "")?;
    offer_service(io, config)?;

    // 6. The first line. A failed key test is often the network of the moment: offer another.
    say(io, "")?;
    while !usable {
        say(
            io,
            "No provider can translate yet, so there is no test translation.",
        )?;
        if !ask_yes(io, "Test the keys again now (or type a new one)? [y/N] ")? {
            say(
                io,
                "Later: `yaku key set NAME` stores a key, `yaku check` tests them all.",
            )?;
            break;
        }
        usable = runtime.block_on(keys(io, config, &cred_path))?;
    }
    if usable {
        let credentials = Credentials::load(&cred_path)?;
        runtime.block_on(first_line(io, config, &credentials))?;
    }

    say(io, "")?;
    say(io, "Next time, each step has its own command:")?;
    say(
        io,
        next_commands(config_path, &key_names(config)).trim_end(),
    )?;
    Ok(())
}

/// The config that will be in force, and whether it is to be written.
enum Plan {
    Write {
        text: String,
        config: Box<Config>,
        overwrite: bool,
    },
    Keep {
        config: Box<Config>,
    },
}

// ---------------------------------------------------------------- step 1: what is sent

/// Says what leaves the machine and asks to go on; returns whether the user agreed.
fn welcome<I: Io>(
    io: &mut I,
    existing: &Option<Result<Config, ConfigError>>,
) -> anyhow::Result<bool> {
    let shown_providers = match existing {
        Some(Ok(c)) => c.providers.clone(),
        _ => Config::defaults()?.providers,
    };
    say(io, "Welcome to yaku setup.\n")?;
    say(
        io,
        &format!(
            "yaku sends only clipboard text that passes its privacy gates (a line in the game's \
             language; never passwords, keys, URLs or its own translations), and only to the \
             providers configured: {}.",
            describe_providers(&shown_providers)
        ),
    )?;
    say(
        io,
        "Free tiers of cloud APIs may use prompts to improve their products; for full privacy, \
         point yaku at a local OpenAI-compatible server (Ollama, LM Studio) instead — the config \
         has a commented example.\n",
    )?;
    if !ask_yes(io, "Continue? [y/N] ")? {
        say(io, "Stopped: nothing was changed.")?;
        return Ok(false);
    }
    Ok(true)
}

// ---------------------------------------------------------------- step 2: languages and plan

/// The languages chosen, and the example config written with them when it can be.
struct Languages {
    source: String,
    target: String,
    /// The example's text and config; None when the source language cannot be written in it
    /// (only allowed when the existing config already uses that language).
    example: Option<(String, Config)>,
}

/// Asks for the source and target languages.
fn languages<I: Io>(
    io: &mut I,
    config_path: &Path,
    existing_ok: Option<&Config>,
) -> anyhow::Result<Languages> {
    let (default_source, default_target) = existing_ok.map_or_else(
        || ("Japanese".to_string(), "English".to_string()),
        |c| {
            (
                c.translation.source_language.clone(),
                c.translation.target_language.clone(),
            )
        },
    );
    say(io, "")?;
    let (source, source_text_ok) = loop {
        let source = ask_default(io, "Source language (the game's)", &default_source)?;
        match example_with_languages(&source, "English")
            .and_then(|t| Config::parse(&t, config_path).map_err(anyhow::Error::from))
        {
            Ok(_) => break (source, true),
            Err(e) => {
                // A language the existing config already translates from stays possible; the
                // example (with the script gate on) just cannot be written with it.
                if existing_ok.is_some_and(|c| {
                    c.translation
                        .source_language
                        .eq_ignore_ascii_case(source.trim())
                }) {
                    break (source, false);
                }
                say(io, &format!("  {}", source_language_problem(&source, &e)))?;
            }
        }
    };
    let target = ask_default(io, "Target language (yours)", &default_target)?;
    let example = if source_text_ok {
        let text = example_with_languages(&source, &target)?;
        let config = Config::parse(&text, config_path)?;
        Some((text, config))
    } else {
        None
    };
    Ok(Languages {
        source,
        target,
        example,
    })
}

/// Decides which config will be in force: the example (written, or overwriting the existing
/// file when the user says so) or the existing one.
fn plan<I: Io>(
    io: &mut I,
    config_path: &Path,
    existing: Option<Result<Config, ConfigError>>,
    example: Option<(String, Config)>,
    source: &str,
) -> anyhow::Result<Plan> {
    let Some(loaded) = existing else {
        return match example {
            Some((text, config)) => Ok(Plan::Write {
                text,
                config: Box::new(config),
                overwrite: false,
            }),
            // Unreachable: without an existing config the source language was validated.
            None => anyhow::bail!("the example config cannot be written with {source}"),
        };
    };
    match &loaded {
        Ok(c) => say(
            io,
            &format!(
                "A config file already exists: {} ({} → {}).",
                config_path.display(),
                c.translation.source_language,
                c.translation.target_language
            ),
        )?,
        Err(e) => say(
            io,
            &format!("A config file already exists but has an error: {e}"),
        )?,
    }
    let overwrite = match &example {
        Some(_) => ask_yes(
            io,
            &format!(
                "Overwrite {} with the documented example and your languages? [y/N] ",
                config_path.display()
            ),
        )?,
        None => {
            say(
                io,
                &format!(
                    "The example config cannot use {} as the source language (it has no \
                     script check), so this file stays.",
                    source.trim()
                ),
            )?;
            false
        }
    };
    match (overwrite, example, loaded) {
        (true, Some((text, config)), _) => Ok(Plan::Write {
            text,
            config: Box::new(config),
            overwrite: true,
        }),
        (_, _, Ok(config)) => Ok(Plan::Keep {
            config: Box::new(config),
        }),
        (_, _, Err(e)) => {
            say(
                io,
                "Fix it (or run `yaku setup` again and overwrite it); nothing was changed.",
            )?;
            Err(e.into())
        }
    }
}

/// For a config about to be written: the example's Gemini and Groq (keys asked next), or one
/// local or custom OpenAI-compatible server that needs no key and has no limits (a `[[providers]]`
/// entry of kind openai, as README describes for local servers), tested in step 3.
fn choose_providers<I: Io>(io: &mut I, config_path: &Path, plan: Plan) -> anyhow::Result<Plan> {
    let Plan::Write {
        text, overwrite, ..
    } = &plan
    else {
        return Ok(plan);
    };
    say(io, "")?;
    say(io, "Which providers translate?")?;
    say(
        io,
        "  1) Gemini, then Groq if Gemini cannot: free API keys, asked next",
    )?;
    say(
        io,
        "  2) a local or custom OpenAI-compatible server (Ollama, LM Studio, llama.cpp, vLLM): no key",
    )?;
    loop {
        match ask_default(io, "Choice", "1")?.as_str() {
            "1" => return Ok(plan),
            "2" => break,
            _ => say(io, "  Type 1 or 2.")?,
        }
    }
    let base_url = loop {
        let url = ask_default(io, "Server URL", "http://127.0.0.1:11434/v1")?;
        match config::check_base_url(&url) {
            Ok(()) => break url,
            Err(why) => say(io, &format!("  {why}"))?,
        }
    };
    let model = loop {
        let answer = io.read_line("Model (as the server names it, such as qwen3:8b): ")?;
        match answer.as_deref().map(str::trim) {
            Some(m) if !m.is_empty() => break m.to_string(),
            Some(_) => say(io, "  The server needs a model name.")?,
            None => anyhow::bail!("no model given; nothing was changed"),
        }
    };
    let text = with_local_provider(text, &base_url, &model)?;
    let config = Config::parse(&text, config_path)?;
    Ok(Plan::Write {
        text,
        config: Box::new(config),
        overwrite: *overwrite,
    })
}

/// The example's provider list replaced by one keyless OpenAI-compatible server at
/// `base_url` serving `model`, with no request limits.
pub fn with_local_provider(example: &str, base_url: &str, model: &str) -> anyhow::Result<String> {
    let quoted = |v: &str| toml::Value::String(v.to_string()).to_string();
    let entry = format!(
        "[[providers]]\n\
         name = \"local\"\n\
         kind = \"openai\"\n\
         model = {}\n\
         base_url = {}\n\
         requests_per_minute = 0   # a local server: no limits, and no key\n\
         requests_per_day = 0\n\n",
        quoted(model),
        quoted(base_url)
    );
    // The list runs from the first `[[providers]]` to the next section or section comment.
    let start = example
        .find("\n[[providers]]")
        .map(|i| i + 1)
        .ok_or_else(|| {
            anyhow::anyhow!("the example config has no [[providers]] (a bug in yaku)")
        })?;
    let end = example[start..]
        .match_indices('\n')
        .map(|(i, _)| start + i + 1)
        .find(|&i| {
            let line = &example[i..];
            (line.starts_with('[') && !line.starts_with("[[providers]]"))
                || line.starts_with("# ----")
        })
        .ok_or_else(|| {
            anyhow::anyhow!("the example config ends with [[providers]] (a bug in yaku)")
        })?;
    Ok(format!("{}{entry}{}", &example[..start], &example[end..]))
}

// ---------------------------------------------------------------- step 4: the config file

/// Writes the example config (0600), unless a file appeared there meanwhile.
fn write_config<I: Io>(
    io: &mut I,
    config_path: &Path,
    text: &str,
    overwrite: bool,
    config: &Config,
) -> anyhow::Result<()> {
    if !overwrite && config_path.exists() {
        say(
            io,
            &format!(
                "{} appeared meanwhile; it was left alone.",
                config_path.display()
            ),
        )?;
        return Ok(());
    }
    if let Some(dir) = config_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::sys::private::create_private_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::sys::private::write_private(config_path, text.as_bytes())
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    say(
        io,
        &format!(
            "{} {} ({} → {}).",
            if overwrite { "Overwrote" } else { "Wrote" },
            config_path.display(),
            config.translation.source_language,
            config.translation.target_language
        ),
    )?;
    Ok(())
}

/// Says the existing config stays, and how to use the languages chosen when they differ.
fn kept<I: Io>(
    io: &mut I,
    config_path: &Path,
    config: &Config,
    chosen: &Languages,
) -> io::Result<()> {
    say(io, &format!("Kept {}.", config_path.display()))?;
    let (source, target) = (chosen.source.trim(), chosen.target.trim());
    let same = config
        .translation
        .source_language
        .eq_ignore_ascii_case(source)
        && config
            .translation
            .target_language
            .eq_ignore_ascii_case(target);
    if same {
        return Ok(());
    }
    say(
        io,
        &format!(
            "The languages you chose ({source} → {target}) were not saved: to use them, change \
             source_language and target_language under [translation] in {}.",
            config_path.display()
        ),
    )
}

// ---------------------------------------------------------------- step 3: keys

/// Asks for, tests and stores each provider's key. Returns whether any provider works.
async fn keys<I: Io>(io: &mut I, config: &Config, cred_path: &Path) -> anyhow::Result<bool> {
    let at_start = Credentials::load(cred_path)?;
    say(
        io,
        &format!(
            "API keys are stored in {} (mode 0600) and tested at once; what you type is not shown.",
            cred_path.display()
        ),
    )?;
    let mut usable = false;
    for p in &config.providers {
        usable |= provider_key(io, p, config, cred_path, &at_start).await?;
    }
    Ok(usable)
}

/// What Enter does at the key prompt: first, and after a typed key failed.
struct Hints {
    first: &'static str,
    after_failure: &'static str,
}

/// One provider: a keyless one is tested; a key already set is tested, then a new one may be
/// typed. Returns whether the provider works.
async fn provider_key<I: Io>(
    io: &mut I,
    p: &ProviderConfig,
    config: &Config,
    cred_path: &Path,
    at_start: &Credentials,
) -> anyhow::Result<bool> {
    if !needs_key(p) {
        say(
            io,
            &format!("{}: needs no key; testing {}…", p.name, p.base_url),
        )?;
        let c = check_provider(p, config, at_start, false).await;
        say(io, &format!("{}: {}", p.name, c.message))?;
        return Ok(works(&c));
    }
    let env = |var: &str| std::env::var(var).ok();
    let mut hints = Hints {
        first: "Enter skips",
        after_failure: "Enter skips",
    };
    let mut usable = false;
    match p.key(env, at_start, config.source.as_deref()) {
        Ok(KeyLookup::Found { source, .. }) => {
            say(
                io,
                &format!("{}: a key is already set ({source}); testing it…", p.name),
            )?;
            let c = check_provider(p, config, at_start, false).await;
            say(io, &format!("{}: {}", p.name, c.message))?;
            usable = works(&c);
            hints.first = if usable {
                "Enter keeps it"
            } else {
                "Enter keeps it anyway"
            };
            hints.after_failure = "Enter keeps the current one";
        }
        Ok(_) => {
            if let Some(page) = key_page(p) {
                say(io, &format!("{}: get a key at {page}", p.name))?;
            }
        }
        Err(e) => say(io, &format!("{}: {e}", p.name))?,
    }
    Ok(ask_key(io, p, config, cred_path, hints).await? || usable)
}

/// Asks for a new key until one is stored or Enter skips. A typed key is tested first and
/// stored only if it works or the user keeps it; returns whether a working key was stored.
async fn ask_key<I: Io>(
    io: &mut I,
    p: &ProviderConfig,
    config: &Config,
    cred_path: &Path,
    hints: Hints,
) -> anyhow::Result<bool> {
    let mut hint = hints.first;
    // Whether a typed key failed: said when the user then skips.
    let mut failed = false;
    loop {
        let typed = io.read_secret(&format!("API key for {} ({hint}): ", p.name))?;
        let typed = typed.as_deref().map(str::trim).unwrap_or_default();
        if typed.is_empty() {
            let said = if failed {
                format!(
                    "{}: skipped; the key that did not work was not stored.",
                    p.name
                )
            } else {
                format!("{}: no new key.", p.name)
            };
            say(io, &said)?;
            return Ok(false);
        }
        say(io, &format!("{}: testing the key…", p.name))?;
        let c = super::probe::check_typed_key(p, config, typed).await;
        if !keep_key(io, p, &c)? {
            failed = true;
            hint = hints.after_failure;
            continue;
        }
        store_key(io, p, cred_path, typed)?;
        return Ok(works(&c));
    }
}

/// Whether a tested key is to be stored: yes when it works, no when it was rejected, and the
/// user's choice when the provider failed for another reason.
fn keep_key<I: Io>(io: &mut I, p: &ProviderConfig, c: &ProviderCheck) -> io::Result<bool> {
    if works(c) {
        say(io, &format!("{}: {}", p.name, c.message))?;
        return Ok(true);
    }
    if c.outcome == "unauthorized" {
        say(
            io,
            &format!(
                "{}: unauthorized — the key was rejected, try again or press Enter to skip",
                p.name
            ),
        )?;
        return Ok(false);
    }
    // Not the key's fault as far as we can tell: the user decides.
    say(io, &format!("{}: {}", p.name, c.message))?;
    ask_yes_default_yes(
        io,
        "The provider did not reject the key. Store it anyway? [Y/n] ",
    )
}

/// Stores the key exactly as `yaku key set` does, and says when the environment overrides it.
fn store_key<I: Io>(
    io: &mut I,
    p: &ProviderConfig,
    cred_path: &Path,
    key: &str,
) -> anyhow::Result<()> {
    Credentials::store(cred_path, &p.name, Some(key))?;
    say(io, &format!("  stored in {}", cred_path.display()))?;
    if let Some(var) = &p.api_key_env
        && std::env::var(var).is_ok_and(|v| !v.trim().is_empty())
    {
        say(
            io,
            &format!(
                "  note: {var} is set in this shell and comes before the stored key \
                 when yaku runs here (the login service does not see it)."
            ),
        )?;
    }
    Ok(())
}

/// Where a user gets a key for `p`, for the providers yaku knows.
fn key_page(p: &ProviderConfig) -> Option<&'static str> {
    if p.kind == config::ProviderKind::Gemini {
        Some("https://aistudio.google.com/apikey (Google AI Studio)")
    } else if p.base_url.contains("api.groq.com") {
        Some("https://console.groq.com/keys (Groq console)")
    } else {
        None
    }
}

/// Whether the probe shows the provider can translate (a rate limit means the key works).
fn works(c: &ProviderCheck) -> bool {
    matches!(c.outcome, "ok" | "rate_limited")
}

/// Whether a provider needs a key at all (a keyless local server does not).
fn needs_key(p: &ProviderConfig) -> bool {
    !matches!(
        p.key(|_| None, &Credentials::default(), None),
        Ok(KeyLookup::NotNeeded)
    )
}

// ---------------------------------------------------------------- step 5: service

/// Offers the login service and installs it when the user says yes.
fn offer_service<I: Io>(io: &mut I, config: &Config) -> io::Result<()> {
    if !ask_yes(
        io,
        "Install and start the login service, so yaku runs whenever you log in? [y/N] ",
    )? {
        return Ok(());
    }
    match install_service(config) {
        Ok(report) => say(io, report.trim_end()),
        Err(e) => say(
            io,
            &format!(
                "The service could not be installed: {e:#}\nTry again later with `yaku service install`."
            ),
        ),
    }
}

fn install_service(config: &Config) -> anyhow::Result<String> {
    let (mut out, warnings) = super::service::install(config)?;
    for warning in warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    Ok(out)
}

// ---------------------------------------------------------------- step 6: the first line

/// Stops the clipboard thread when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Translates the first line copied after the prompt, the way `yaku run` would: the same
/// clipboard watch, intake (cleaning, gates) and line use case.
async fn first_line<I: Io>(
    io: &mut I,
    config: &Config,
    credentials: &Credentials,
) -> anyhow::Result<()> {
    let mut watching = match watch_clipboard(config).await? {
        Ok(w) => w,
        Err(why) => return Ok(say(io, &cannot_read(&why))?),
    };
    let mut gates = Gates::new(config.clipboard.gates.clone())?;
    let chain = crate::wire::build_chain(config, credentials, Arc::new(TokioClock))?;
    say(
        io,
        &format!(
            "Last step: copy a line of {} text (from a game, or anywhere). Its translation \
             appears here and as a notification. Press Enter to skip (I wait up to {} s).",
            config.translation.source_language,
            FIRST_LINE_WAIT.as_secs()
        ),
    )?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let Some(text) = wait_for_line(io, config, &mut watching.events, &mut gates, &mut tick).await?
    else {
        return Ok(());
    };
    say(io, &format!("Translating: {text}"))?;
    match translate_line(io, config, &chain, &text, &mut tick).await? {
        Some(result) => show_result(io, config, &text, result).await,
        None => Ok(()),
    }
}

fn cannot_read(why: &str) -> String {
    format!(
        "The clipboard cannot be read here ({why}), so there is no test translation. \
         `yaku run` needs a desktop session; meanwhile try `yaku translate \"…\"`."
    )
}

/// The clipboard's changes, watched as `yaku run` watches it.
struct Watching {
    events: mpsc::Receiver<ClipEvent>,
    _stop: StopOnDrop,
}

/// Starts watching from what is on the clipboard now (it is not the user's test line). The
/// error says why the clipboard cannot be read here.
async fn watch_clipboard(config: &Config) -> anyhow::Result<Result<Watching, String>> {
    let clipboard = crate::wire::clipboard(config);
    let control = WatchControl {
        interval_ms: Arc::new(AtomicU64::new(
            config.clipboard.poll_interval.as_millis() as u64
        )),
        ..WatchControl::default()
    };
    let stop = StopOnDrop(control.stop.clone());
    let (first_tx, first_rx) = oneshot::channel();
    let (tx, events) = mpsc::channel(16);
    // Reads block (a hung clipboard owner can take seconds), so even the first one runs on
    // the watch thread, which ends when told to or when nobody listens any more.
    std::thread::Builder::new()
        .name("yaku-setup-clipboard".into())
        .spawn(move || {
            let mut clipboard = clipboard;
            let mut detector = ChangeDetector::default();
            let first = clipboard.read().map(|read| {
                let _ = detector.observe(read);
            });
            let readable = first.is_ok();
            if first_tx.send(first).is_ok() && readable {
                watch_from(detector, clipboard, tx, control);
            }
        })
        .context("cannot start the clipboard thread")?;
    Ok(match tokio::time::timeout(QUICK, first_rx).await {
        Ok(Ok(Ok(()))) => Ok(Watching {
            events,
            _stop: stop,
        }),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(_)) => Err("the reader stopped".into()),
        Err(_) => Err("no answer within 3 s".into()),
    })
}

/// Waits for a copied line that passes intake, saying why each rejected one was not sent.
/// None when the user pressed Enter or nothing came in time (both said).
async fn wait_for_line<I: Io>(
    io: &mut I,
    config: &Config,
    events: &mut mpsc::Receiver<ClipEvent>,
    gates: &mut Gates,
    tick: &mut tokio::time::Interval,
) -> anyhow::Result<Option<String>> {
    let language = &config.translation.source_language;
    let give_up = tokio::time::Instant::now() + FIRST_LINE_WAIT;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else {
                    say(io, &cannot_read("the reader stopped"))?;
                    return Ok(None);
                };
                match intake(event, gates, config.clipboard.collapse_repeats) {
                    Intake::Accepted(text) => return Ok(Some(text)),
                    Intake::Rejected { rejection, chars } => say(io, &format!(
                        "Not sent: the {} gate rejected what you copied ({chars} characters; {}). \
                         Copy a line of {language} text.",
                        rejection.gate_name(),
                        rejection.explain()
                    ))?,
                }
            }
            _ = tick.tick() => {
                if io.enter_pressed()? {
                    say(io, "Skipped the test translation.")?;
                    return Ok(None);
                }
            }
            _ = tokio::time::sleep_until(give_up) => {
                say(io, &format!(
                    "Nothing new was copied within {} s; skipped the test translation.",
                    FIRST_LINE_WAIT.as_secs()
                ))?;
                return Ok(None);
            }
        }
    }
}

/// Translates `text` through the line use case, with no store (the test line is not
/// history), until it is done or Enter is pressed (None).
async fn translate_line<I: Io>(
    io: &mut I,
    config: &Config,
    chain: &Chain,
    text: &str,
    tick: &mut tokio::time::Interval,
) -> anyhow::Result<Option<Result<Translation, ChainFailure>>> {
    let request = crate::wire::request_for(config, text);
    let lines = Lines::default();
    let entry = match lines.accept(&request, &request.glossary, Source::Cli, CacheUse::Off) {
        Accepted::Cached(t, _) => return Ok(Some(Ok(t))),
        Accepted::Pending(entry) => entry,
    };
    let translating = lines.translate(chain, &request, None, &entry);
    tokio::pin!(translating);
    loop {
        tokio::select! {
            r = &mut translating => return Ok(Some(r)),
            _ = tick.tick() => {
                if io.enter_pressed()? {
                    say(io, "Skipped the test translation.")?;
                    return Ok(None);
                }
            }
        }
    }
}

/// Prints the translation (and shows it as a notification), or why there is none.
async fn show_result<I: Io>(
    io: &mut I,
    config: &Config,
    text: &str,
    result: Result<Translation, ChainFailure>,
) -> anyhow::Result<()> {
    match result {
        Ok(t) => {
            say(io, "")?;
            write_options(io, &t)?;
            say(io, &t.via_line())?;
            if config.notify.enabled {
                notify(io, config, text, &t).await?;
            }
            say(
                io,
                "yaku works. Run `yaku run` (or the login service) to translate as you play.",
            )?;
        }
        Err(failure) => {
            say(io, "No provider could translate it:")?;
            for s in &failure.skipped {
                say(io, &format!("  {}", s.described()))?;
            }
        }
    }
    Ok(())
}

fn write_options<I: Io>(io: &mut I, t: &Translation) -> io::Result<()> {
    for line in super::translate::option_lines(t, "  ") {
        say(io, &line)?;
    }
    Ok(())
}

async fn notify<I: Io>(io: &mut I, config: &Config, text: &str, t: &Translation) -> io::Result<()> {
    let first = config
        .providers
        .first()
        .map(|p| p.name.as_str())
        .unwrap_or_default();
    let speaker =
        crate::core::speaker::shown_name(text, &config.context.glossary, t.speaker.as_deref());
    let notice = crate::core::notice::translation(
        text,
        speaker.as_deref(),
        t,
        config.notify.show_original,
        first,
    );
    let notifier = DesktopNotifier::new(config.notify.timeout_ms);
    match tokio::time::timeout(QUICK, notifier.show(&notice)).await {
        Ok(Ok(())) => say(io, "(also shown as a desktop notification)"),
        Ok(Err(e)) => say(io, &format!("(no desktop notification: {e})")),
        Err(_) => say(
            io,
            "(no desktop notification: the notification server did not answer within 3 s)",
        ),
    }
}

// ---------------------------------------------------------------- text and prompts

/// The documented example with the two language values replaced.
pub fn example_with_languages(source: &str, target: &str) -> anyhow::Result<String> {
    let text = replace_value(config::EXAMPLE, "source_language", source.trim())?;
    replace_value(&text, "target_language", target.trim())
}

/// Replaces the value of the first `key = ...` line (at the start of a line) with `value` as a
/// TOML string.
fn replace_value(text: &str, key: &str, value: &str) -> anyhow::Result<String> {
    let quoted = toml::Value::String(value.to_string()).to_string();
    let mut out = String::with_capacity(text.len() + value.len());
    let mut done = false;
    for line in text.split_inclusive('\n') {
        let is_key = !done
            && line
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
        if is_key {
            let ending = if line.ends_with('\n') { "\n" } else { "" };
            out.push_str(&format!("{key} = {quoted}{ending}"));
            done = true;
        } else {
            out.push_str(line);
        }
    }
    if !done {
        anyhow::bail!("the example config has no `{key}` line (a bug in yaku)");
    }
    Ok(out)
}

/// Why `source` cannot be the source language of the example config.
fn source_language_problem(source: &str, err: &anyhow::Error) -> String {
    let cfg = GateConfig {
        source_language: source.trim().to_string(),
        ..GateConfig::default()
    };
    match Gates::new(cfg) {
        Err(e) => e.to_string(),
        Ok(_) => format!("{err:#}"),
    }
}

/// `gemini (generativelanguage.googleapis.com), groq (api.groq.com)`.
fn describe_providers(providers: &[ProviderConfig]) -> String {
    if providers.is_empty() {
        return "none yet".into();
    }
    providers
        .iter()
        .map(|p| {
            let host = reqwest::Url::parse(&p.base_url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| p.base_url.clone());
            format!("{} ({host})", p.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The names of the providers needing a key under the config at `path` (the defaults' when it
/// cannot be loaded).
fn provider_names_needing_keys(path: &Path) -> Vec<String> {
    let config = Config::load(path).or_else(|_| Config::defaults());
    match config {
        Ok(c) => key_names(&c),
        Err(_) => vec!["gemini".into(), "groq".into()],
    }
}

/// The names of `config`'s providers that need a key.
fn key_names(config: &Config) -> Vec<String> {
    config
        .providers
        .iter()
        .filter(|p| needs_key(p))
        .map(|p| p.name.clone())
        .collect()
}

/// The non-interactive commands, one a line, with `--config PATH` when `config_path` is not
/// where yaku looks by default.
pub fn next_commands(config_path: &Path, key_names: &[String]) -> String {
    let flag = match config::config_path(None) {
        Ok(default) if default == config_path => String::new(),
        _ => format!(" --config {}", shell_quote(&config_path.to_string_lossy())),
    };
    let mut rows: Vec<(String, &str)> = vec![(
        format!("yaku config init{flag}"),
        "write the documented example config (0600)",
    )];
    for name in key_names {
        rows.push((
            format!("yaku key set {name}{flag}"),
            "store a key (asked without echo, or read from standard input)",
        ));
    }
    rows.push((
        format!("yaku check{flag}"),
        "test the config, keys, clipboard, notifications",
    ));
    rows.push((
        format!("yaku service install{flag}"),
        "run yaku at login, and start it now",
    ));
    rows.push((
        format!("yaku run{flag}"),
        "translate what you copy, in the foreground",
    ));
    let width = rows
        .iter()
        .map(|(c, _)| c.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(c, what)| format!("  {c:<width$}   {what}\n"))
        .collect()
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn say<I: Io>(io: &mut I, text: &str) -> io::Result<()> {
    io.write(text)?;
    io.write("\n")
}

/// `y` or `yes` (any case) is yes; anything else, Enter and end of input are no.
fn ask_yes<I: Io>(io: &mut I, prompt: &str) -> io::Result<bool> {
    Ok(io.read_line(prompt)?.as_deref().is_some_and(is_yes))
}

/// `n` or `no` is no; Enter, end of input and anything else are yes.
fn ask_yes_default_yes<I: Io>(io: &mut I, prompt: &str) -> io::Result<bool> {
    Ok(!io
        .read_line(prompt)?
        .as_deref()
        .is_some_and(|a| matches!(a.trim().to_lowercase().as_str(), "n" | "no")))
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

/// Asks with a default that Enter (or end of input) keeps.
fn ask_default<I: Io>(io: &mut I, question: &str, default: &str) -> io::Result<String> {
    let answer = io.read_line(&format!("{question} [{default}]: "))?;
    Ok(match answer.as_deref().map(str::trim) {
        Some(a) if !a.is_empty() => a.to_string(),
        _ => default.to_string(),
    })
}

// ---------------------------------------------------------------- the terminal

/// Standard input and output, which are a terminal.
struct TerminalIo {
    stdin: io::Stdin,
    stdout: io::Stdout,
}

impl TerminalIo {
    fn new() -> Self {
        Self {
            stdin: io::stdin(),
            stdout: io::stdout(),
        }
    }

    fn read(&mut self) -> io::Result<Option<String>> {
        let mut line = String::new();
        if self.stdin.lock().read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(line.trim_end_matches(['\n', '\r']).to_string()))
    }
}

impl Io for TerminalIo {
    fn read_line(&mut self, prompt: &str) -> io::Result<Option<String>> {
        self.write(prompt)?;
        self.read()
    }

    fn read_secret(&mut self, prompt: &str) -> io::Result<Option<String>> {
        // Echo goes off before the prompt shows, so nothing typed after it is echoed.
        let echo = NoEcho::new();
        self.write(prompt)?;
        let line = self.read();
        drop(echo);
        // The Enter was not echoed either.
        self.write("\n")?;
        line
    }

    fn write(&mut self, text: &str) -> io::Result<()> {
        let mut out = self.stdout.lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    fn enter_pressed(&mut self) -> io::Result<bool> {
        if !stdin_ready() {
            return Ok(false);
        }
        // In canonical mode a readable terminal holds a whole line (or end of input).
        let _ = self.read()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_example_gets_the_chosen_languages_and_nothing_else_changes() {
        let text = example_with_languages("Korean", "French").unwrap();
        let expected = config::EXAMPLE
            .replacen(
                "source_language = \"Japanese\"",
                "source_language = \"Korean\"",
                1,
            )
            .replacen(
                "target_language = \"English\"",
                "target_language = \"French\"",
                1,
            );
        assert_eq!(text, expected);
        let c = Config::parse(&text, Path::new("x.toml")).unwrap();
        assert_eq!(c.translation.source_language, "Korean");
        assert_eq!(c.translation.target_language, "French");
    }

    #[test]
    fn a_language_with_quotes_stays_valid_toml() {
        let text = example_with_languages("Japanese", "English \"US\" \\ x").unwrap();
        let c = Config::parse(&text, Path::new("x.toml")).unwrap();
        assert_eq!(c.translation.target_language, "English \"US\" \\ x");
    }

    #[test]
    fn an_unsupported_source_language_is_explained() {
        let text = example_with_languages("French", "English").unwrap();
        let err = anyhow::Error::from(Config::parse(&text, Path::new("x.toml")).unwrap_err());
        let why = source_language_problem("French", &err);
        assert!(why.contains("Japanese, Chinese, Korean"), "{why}");
    }

    #[test]
    fn a_local_server_replaces_the_example_providers_and_nothing_else() {
        let text =
            with_local_provider(config::EXAMPLE, "http://127.0.0.1:8080/v1", "qwen3:8b").unwrap();
        let config = Config::parse(&text, Path::new("config.toml")).unwrap();
        assert_eq!(config.providers.len(), 1);
        let p = &config.providers[0];
        assert_eq!((p.name.as_str(), p.model.as_str()), ("local", "qwen3:8b"));
        assert_eq!(p.base_url, "http://127.0.0.1:8080/v1");
        assert_eq!((p.requests_per_minute, p.requests_per_day), (0, 0));
        assert!(!needs_key(p));
        let defaults = Config::parse(config::EXAMPLE, Path::new("config.toml")).unwrap();
        assert_eq!(
            config.clipboard.poll_interval,
            defaults.clipboard.poll_interval
        );
        assert_eq!(
            config.translation.source_language,
            defaults.translation.source_language
        );
        assert!(
            text.contains("\n# ---- the daemon (`yaku run`) ----\n"),
            "{text}"
        );
    }

    #[test]
    fn only_y_or_yes_is_yes() {
        for a in ["y", "Y", "yes", " YES "] {
            assert!(is_yes(a), "{a}");
        }
        for a in ["", "n", "no", "yep", "ok", "1"] {
            assert!(!is_yes(a), "{a}");
        }
    }

    #[test]
    fn next_commands_name_each_key_and_the_config_when_not_default() {
        let text = next_commands(
            Path::new("/tmp/my dir/c.toml"),
            &["gemini".to_string(), "groq".to_string()],
        );
        assert!(
            text.contains("yaku key set gemini --config '/tmp/my dir/c.toml'"),
            "{text}"
        );
        assert!(text.contains("yaku key set groq"), "{text}");
        assert!(text.contains("yaku service install"), "{text}");
        assert!(text.contains("yaku run"), "{text}");
    }

    /// A scripted conversation: answers in order, everything written kept.
    struct Script {
        answers: std::collections::VecDeque<Option<String>>,
        out: String,
    }

    impl Io for Script {
        fn read_line(&mut self, prompt: &str) -> io::Result<Option<String>> {
            self.out.push_str(prompt);
            Ok(self.answers.pop_front().flatten())
        }
        fn read_secret(&mut self, prompt: &str) -> io::Result<Option<String>> {
            self.read_line(prompt)
        }
        fn write(&mut self, text: &str) -> io::Result<()> {
            self.out.push_str(text);
            Ok(())
        }
        fn enter_pressed(&mut self) -> io::Result<bool> {
            Ok(true)
        }
    }

    #[test]
    fn end_of_input_at_the_confirmation_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let mut io = Script {
            answers: [None].into(),
            out: String::new(),
        };
        run_with(&mut io, &path).unwrap();
        assert!(io.out.contains("nothing was changed"), "{}", io.out);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::adapters::clipboard::SystemClipboard;
use crate::adapters::notify::DesktopNotifier;
use super::probe::{ProviderCheck, check_provider};
use crate::config::{self, Config, ConfigError, KeyLookup, ProviderConfig};
use crate::core::chain::Translation;
use crate::core::clock::TokioClock;
use crate::core::daemon::Notifier;
use crate::core::gates::{GateConfig, Gates};
use crate::core::intake::{
    ChangeDetector, ClipboardError, ClipboardRead, ClipboardSource, Intake, intake,
};
use crate::config::credentials::Credentials;
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
    let existing: Option<Result<Config, ConfigError>> = if config_path.exists() {
        Some(Config::load(config_path))
    } else {
        None
    };

    // 1. What is sent, and where.
    let shown_providers = match &existing {
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
        return Ok(());
    }

    // 2. Languages, and which config will be in force.
    let existing_ok = match &existing {
        Some(Ok(c)) => Some(c),
        _ => None,
    };
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
    let new_text = if source_text_ok {
        let text = example_with_languages(&source, &target)?;
        let config = Config::parse(&text, config_path)?;
        Some((text, config))
    } else {
        None
    };

    let plan = match existing {
        None => match new_text {
            Some((text, config)) => Plan::Write {
                text,
                config: Box::new(config),
                overwrite: false,
            },
            // Unreachable: without an existing config the source language was validated.
            None => anyhow::bail!("the example config cannot be written with {source}"),
        },
        Some(loaded) => {
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
            let overwrite = match &new_text {
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
            match (overwrite, new_text, loaded) {
                (true, Some((text, config)), _) => Plan::Write {
                    text,
                    config: Box::new(config),
                    overwrite: true,
                },
                (_, _, Ok(config)) => Plan::Keep {
                    config: Box::new(config),
                },
                (_, _, Err(e)) => {
                    say(
                        io,
                        "Fix it (or run `yaku setup` again and overwrite it); nothing was changed.",
                    )?;
                    return Err(e.into());
                }
            }
        }
    };
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
        } => {
            if !overwrite && config_path.exists() {
                say(
                    io,
                    &format!(
                        "{} appeared meanwhile; it was left alone.",
                        config_path.display()
                    ),
                )?;
            } else {
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
                        if *overwrite { "Overwrote" } else { "Wrote" },
                        config_path.display(),
                        config.translation.source_language,
                        config.translation.target_language
                    ),
                )?;
            }
        }
        Plan::Keep { config } => {
            say(io, &format!("Kept {}.", config_path.display()))?;
            let same = config
                .translation
                .source_language
                .eq_ignore_ascii_case(source.trim())
                && config
                    .translation
                    .target_language
                    .eq_ignore_ascii_case(target.trim());
            if !same {
                say(
                    io,
                    &format!(
                        "The languages you chose ({} → {}) were not saved: to use them, change \
                         source_language and target_language under [translation] in {}.",
                        source.trim(),
                        target.trim(),
                        config_path.display()
                    ),
                )?;
            }
        }
    }

    // 5. The login service.
    say(io, "")?;
    if ask_yes(
        io,
        "Install and start the login service, so yaku runs whenever you log in? [y/N] ",
    )? {
        match install_service(config) {
            Ok(report) => say(io, report.trim_end())?,
            Err(e) => say(
                io,
                &format!(
                    "The service could not be installed: {e:#}\nTry again later with `yaku service install`."
                ),
            )?,
        }
    }

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
    let names: Vec<String> = config
        .providers
        .iter()
        .filter(|p| needs_key(p))
        .map(|p| p.name.clone())
        .collect();
    say(io, next_commands(config_path, &names).trim_end())?;
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

// ---------------------------------------------------------------- step 3: keys

/// Asks for, tests and stores each provider's key. Returns whether any provider works.
async fn keys<I: Io>(io: &mut I, config: &Config, cred_path: &Path) -> anyhow::Result<bool> {
    let at_start = Credentials::load(cred_path)?;
    let env = |var: &str| std::env::var(var).ok();
    let mut usable = false;
    say(
        io,
        &format!(
            "API keys are stored in {} (mode 0600) and tested at once; what you type is not shown.",
            cred_path.display()
        ),
    )?;
    for p in &config.providers {
        if !needs_key(p) {
            say(
                io,
                &format!("{}: needs no key; testing {}…", p.name, p.base_url),
            )?;
            let c = check_provider(p, config, &at_start, false).await;
            say(io, &format!("{}: {}", p.name, c.message))?;
            usable |= works(&c);
            continue;
        }
        let mut hint = "Enter skips";
        let mut after_failure = "Enter skips";
        match p.key(env, &at_start, config.source.as_deref()) {
            Ok(KeyLookup::Found { source, .. }) => {
                say(
                    io,
                    &format!("{}: a key is already set ({source}); testing it…", p.name),
                )?;
                let c = check_provider(p, config, &at_start, false).await;
                say(io, &format!("{}: {}", p.name, c.message))?;
                if works(&c) {
                    usable = true;
                    hint = "Enter keeps it";
                } else {
                    hint = "Enter keeps it anyway";
                }
                after_failure = "Enter keeps the current one";
            }
            Ok(_) => {
                if let Some(page) = key_page(p) {
                    say(io, &format!("{}: get a key at {page}", p.name))?;
                }
            }
            Err(e) => say(io, &format!("{}: {e}", p.name))?,
        }
        // Whether a typed key failed: said when the user then skips.
        let mut failed = false;
        loop {
            let typed = io.read_secret(&format!("API key for {} ({hint}): ", p.name))?;
            let typed = typed.as_deref().map(str::trim).unwrap_or_default();
            if typed.is_empty() {
                say(
                    io,
                    &if failed {
                        format!(
                            "{}: skipped; the key that did not work was not stored.",
                            p.name
                        )
                    } else {
                        format!("{}: no new key.", p.name)
                    },
                )?;
                break;
            }
            say(io, &format!("{}: testing the key…", p.name))?;
            let c = test_typed_key(p, config, typed).await;
            let keep = if works(&c) {
                say(io, &format!("{}: {}", p.name, c.message))?;
                usable = true;
                true
            } else if c.outcome == "unauthorized" {
                say(
                    io,
                    &format!(
                        "{}: unauthorized — the key was rejected, try again or press Enter to skip",
                        p.name
                    ),
                )?;
                false
            } else {
                // Not the key's fault as far as we can tell: the user decides.
                say(io, &format!("{}: {}", p.name, c.message))?;
                ask_yes_default_yes(
                    io,
                    "The provider did not reject the key. Store it anyway? [Y/n] ",
                )?
            };
            if !keep {
                failed = true;
                hint = after_failure;
                continue;
            }
            // Exactly what `yaku key set` does.
            Credentials::store(cred_path, &p.name, Some(typed))?;
            say(io, &format!("  stored in {}", cred_path.display()))?;
            if let Some(var) = &p.api_key_env
                && env(var).is_some_and(|v| !v.trim().is_empty())
            {
                say(
                    io,
                    &format!(
                        "  note: {var} is set in this shell and comes before the stored key \
                         when yaku runs here (the login service does not see it)."
                    ),
                )?;
            }
            break;
        }
    }
    Ok(usable)
}

/// Sends `key` to `p` the way `yaku check` does, without storing it anywhere: the key alone, so
/// neither the environment, nor the credentials file, nor the config file can stand in for it.
async fn test_typed_key(p: &ProviderConfig, config: &Config, key: &str) -> ProviderCheck {
    let mut only_typed = p.clone();
    only_typed.api_key_env = None;
    only_typed.api_key = Some(key.to_string());
    // No file to check the permissions of: the key is in memory, not in the config.
    let mut in_memory = config.clone();
    in_memory.source = None;
    check_provider(&only_typed, &in_memory, &Credentials::default(), false).await
}

/// Whether the probe shows the provider can translate (a rate limit means the key works).
fn works(c: &ProviderCheck) -> bool {
    matches!(c.outcome, "ok" | "rate_limited")
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

/// Whether a provider needs a key at all (a keyless local server does not).
fn needs_key(p: &ProviderConfig) -> bool {
    !matches!(
        p.key(|_| None, &Credentials::default(), None),
        Ok(KeyLookup::NotNeeded)
    )
}

// ---------------------------------------------------------------- step 5: service

fn install_service(config: &Config) -> anyhow::Result<String> {
    use crate::service;
    let binary = std::env::current_exe().context("cannot find this program's path")?;
    let log_dir = config.log_dir(&crate::sys::dirs::Dirs::resolve()?);
    let env = service::ServiceEnv::from_process(binary, log_dir)?;
    let report = service::install(&env)?;
    let mut out = report.render();
    for warning in crate::cli::service::key_warnings(config)? {
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

async fn first_line<I: Io>(
    io: &mut I,
    config: &Config,
    credentials: &Credentials,
) -> anyhow::Result<()> {
    type ReadResult = Result<ClipboardRead, ClipboardError>;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ReadResult>(1);
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let max_chars = config.clipboard.gates.max_chars;
    let interval = config
        .clipboard
        .poll_interval
        .max(Duration::from_millis(10));
    // Reads block (a hung clipboard owner can take seconds): they run on their own thread,
    // which ends when told to or when nobody listens any more.
    std::thread::Builder::new()
        .name("yaku-setup-clipboard".into())
        .spawn(move || {
            let mut clipboard = SystemClipboard::new(max_chars);
            while !stop.load(Ordering::Relaxed) {
                if tx.blocking_send(clipboard.read()).is_err() {
                    break;
                }
                std::thread::sleep(interval);
            }
        })
        .context("cannot start the clipboard thread")?;

    let cannot_read = |why: String| {
        format!(
            "The clipboard cannot be read here ({why}), so there is no test translation. \
             `yaku run` needs a desktop session; meanwhile try `yaku translate \"…\"`."
        )
    };
    let first = match tokio::time::timeout(QUICK, rx.recv()).await {
        Ok(Some(Ok(read))) => read,
        Ok(Some(Err(e))) => return Ok(say(io, &cannot_read(e.to_string()))?),
        Ok(None) => return Ok(say(io, &cannot_read("the reader stopped".into()))?),
        Err(_) => return Ok(say(io, &cannot_read("no answer within 3 s".into()))?),
    };
    // What was there before this step is not the user's test line.
    let mut detector = ChangeDetector::default();
    let _ = detector.observe(first);
    let mut gates = Gates::new(config.clipboard.gates.clone())?;
    let chain = crate::wire::build_chain(config, credentials, Arc::new(TokioClock))?;
    let language = &config.translation.source_language;
    say(
        io,
        &format!(
            "Last step: copy a line of {language} text (from a game, or anywhere). Its translation \
             appears here and as a notification. Press Enter to skip (I wait up to {} s).",
            FIRST_LINE_WAIT.as_secs()
        ),
    )?;
    let give_up = tokio::time::Instant::now() + FIRST_LINE_WAIT;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let text = loop {
        tokio::select! {
            read = rx.recv() => match read {
                Some(Ok(read)) => {
                    let Some(event) = detector.observe(read) else { continue };
                    match intake(event, &mut gates, config.clipboard.collapse_repeats) {
                        Intake::Accepted(text) => break text,
                        Intake::Rejected { gate, chars } => say(io, &format!(
                            "Not sent: the {gate} gate rejected what you copied ({chars} characters; {}). \
                             Copy a line of {language} text.",
                            gate_meaning(gate)
                        ))?,
                    }
                }
                // A failed read now and then is not worth a word; the thread keeps trying.
                Some(Err(_)) => {}
                None => return Ok(say(io, &cannot_read("the reader stopped".into()))?),
            },
            _ = tick.tick() => {
                if io.enter_pressed()? {
                    return Ok(say(io, "Skipped the test translation.")?);
                }
            }
            _ = tokio::time::sleep_until(give_up) => {
                say(io, &format!(
                    "Nothing new was copied within {} s; skipped the test translation.",
                    FIRST_LINE_WAIT.as_secs()
                ))?;
                return Ok(());
            }
        }
    };
    say(io, &format!("Translating: {text}"))?;
    let request = crate::wire::request_for(config, &text);
    let translating = chain.translate(&request, None);
    tokio::pin!(translating);
    let result = loop {
        tokio::select! {
            r = &mut translating => break r,
            _ = tick.tick() => {
                if io.enter_pressed()? {
                    return Ok(say(io, "Skipped the test translation.")?);
                }
            }
        }
    };
    match result {
        Ok(t) => {
            say(io, "")?;
            write_options(io, &t)?;
            say(io, &t.via_line())?;
            if config.notify.enabled {
                notify(io, config, &text, &t).await?;
            }
            say(
                io,
                "yaku works. Run `yaku run` (or the login service) to translate as you play.",
            )?;
            Ok(())
        }
        Err(failure) => {
            say(io, "No provider could translate it:")?;
            for s in &failure.skipped {
                say(io, &format!("  {}", s.described()))?;
            }
            Ok(())
        }
    }
}

fn write_options<I: Io>(io: &mut I, t: &Translation) -> io::Result<()> {
    for (i, option) in t.options.iter().enumerate() {
        if i == 0 {
            say(io, &format!("  {option}"))?;
        } else {
            say(io, &format!("    {}. {option}", i + 1))?;
        }
    }
    Ok(())
}

async fn notify<I: Io>(io: &mut I, config: &Config, text: &str, t: &Translation) -> io::Result<()> {
    let first = config
        .providers
        .first()
        .map(|p| p.name.as_str())
        .unwrap_or_default();
    let notice = crate::core::notice::translation(text, t, config.notify.show_original, first);
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

/// What a gate's rejection means, in words (never quoting the text).
fn gate_meaning(gate: &str) -> &'static str {
    match gate {
        "concealed" => "a password manager marked it as secret",
        "too_short" => "shorter than min_chars",
        "too_long" => "longer than max_chars",
        "wrong_script" => "not enough of the source language's script",
        "secret" => "it looks like a key, token or password",
        "ignored" => "it matches an `ignore` pattern of the config",
        "own_output" => "it is one of yaku's own translations",
        "repeat" => "the same as the previous line",
        _ => "a privacy gate",
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
        Ok(c) => c
            .providers
            .iter()
            .filter(|p| needs_key(p))
            .map(|p| p.name.clone())
            .collect(),
        Err(_) => vec!["gemini".into(), "groq".into()],
    }
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

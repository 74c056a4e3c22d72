//! The command line, as clap sees it. Parsing only: `app` acts on it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// yaku (訳) translates the game text you copy and shows it as a desktop notification.
#[derive(Debug, Parser)]
#[command(
    name = "yaku",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_help = "New here? Run `yaku setup`, then copy a line of Japanese text.\n\
                  Exit codes: 0 ok, 1 error, 2 usage, 3 no provider could translate, 78 config error.\n\
                  Logs: YAKU_LOG=debug for more; `yaku logs --follow` to watch the daemon."
)]
pub struct Cli {
    /// Config file to use [default: $YAKU_CONFIG, else ~/.config/yaku/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// First run: a few questions, keys tested at once, the config written, the login service
    /// offered, and your first line translated
    Setup,
    /// Watch the clipboard and show each copied line's translation (runs until SIGINT/SIGTERM)
    Run,
    /// Diagnose yaku without printing secrets: config, keys, a live request to each provider,
    /// clipboard, notifications, logs, history store, service (exit 0 if a provider can translate)
    Check {
        /// Print one JSON object
        #[arg(long)]
        json: bool,
        /// Send no request to the providers; only check that their keys are found
        #[arg(long)]
        offline: bool,
    },
    /// Show what the running daemon is doing: pause state, queue, each provider's breaker
    Status {
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Stop reading the clipboard until `yaku resume` (or for a while with --for)
    Pause {
        /// How long, such as 10m, 90s or 1h30m
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
    },
    /// Read the clipboard again after `yaku pause`
    Resume,
    /// Make the running daemon re-read its config (as SIGHUP does); a broken config is refused
    Reload,
    /// Stop the running daemon as SIGTERM does (the line in flight finishes or is recorded as
    /// interrupted) and wait until it has exited; exit 1 if yaku is not running
    Stop,
    /// The last translated lines, oldest first; or export or clear the history
    #[command(args_conflicts_with_subcommands = true)]
    History(HistoryArgs),
    /// Per-provider requests, failures, fallbacks and latency; cache hits
    Stats {
        /// Print one JSON object
        #[arg(long)]
        json: bool,
        /// How far back: 24h, 7d, 30m, ... or all
        #[arg(long, default_value = "all", value_name = "24h|7d|all")]
        since: String,
        /// Only the lines of the [[games]] profile NAME
        #[arg(long, value_name = "NAME")]
        game: Option<String>,
    },
    /// Print the current log file's path, or follow it across rotations
    Logs {
        /// Print the log as it grows, following it across rotations (like `tail -F`)
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Translate one line now and print the options (exit 3 if no provider could)
    Translate(TranslateArgs),
    /// Translate a whole script ahead of reading it, in batches within every provider's limits,
    /// into the cache the daemon reads (a later copy of any of its lines is a cache hit)
    #[command(long_about = PREFETCH_ABOUT)]
    Prefetch(PrefetchArgs),
    /// Record that option N (1-based) of the last shown line is the one you prefer: the history
    /// keeps it and the cache shows it first from then on
    Pick {
        /// The option's number as shown (1 = the first)
        #[arg(value_parser = clap::value_parser!(u8).range(1..=5))]
        n: u8,
    },
    /// Run yaku at login: a systemd user unit (else an XDG autostart entry), a LaunchAgent on
    /// macOS, a Run key on Windows
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Store API keys where the login service can reach them, and see where each key is found
    #[command(subcommand)]
    Key(KeyCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Print yaku's man page (roff), generated from these same definitions
    #[command(hide = true)]
    Man,
    /// Write the packaging assets (man page, completions, systemd user unit) into DIR
    #[command(hide = true)]
    Assets {
        /// Where to write them
        dir: PathBuf,
        /// The installed binary's path, for the unit
        #[arg(long, default_value = "/usr/bin/yaku")]
        binary: PathBuf,
    },
    /// Write or locate the config file
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Args)]
pub struct TranslateArgs {
    /// The text to translate; read from standard input when absent or "-"
    pub text: Option<String>,
    /// Print one JSON object instead of plain text
    #[arg(long)]
    pub json: bool,
    /// Use only this provider (a `name` from the config)
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Skip the cache and refresh it with a new translation
    #[arg(long)]
    pub fresh: bool,
}

const PREFETCH_ABOUT: &str = "Translate a whole script ahead of reading it, into the cache the daemon reads.

FILE is plain text (one line of the game per line; blank lines are skipped) or a GalTransl-style \
JSON list [{\"name\": ..., \"message\": ...}] (the speaker goes into the context as \"name: line\"). \
Lines pass the same cleaning and privacy gates as copied ones and get the same cache keys; \
the previous lines of the script are their context. Lines already cached are not asked again, \
and every finished batch is stored at once: stop it (Ctrl-C) and run it again to continue.

Each request carries --batch lines (a reply that does not hold one translation per line, in \
order, is split in halves and asked again, down to single lines). Requests are paced within \
each provider's requests_per_minute, requests_per_day and tokens_per_minute, and by what the \
provider reports about its own budget. One request a minute and one a day of each provider \
are left to the daemon, so a copied line never waits behind the prefetch.

Exit codes: 0 every line is cached (or --limit was reached), 1 some lines are not (run it \
again later), 2 usage.";

#[derive(Debug, Args)]
pub struct PrefetchArgs {
    /// The script: plain text, one line per line, or GalTransl JSON
    pub file: PathBuf,
    /// Lines per request
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub batch: u16,
    /// Use only this provider (a `name` from the config)
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Send at most N requests, then stop (run again to continue)
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Only say how many lines, requests and days of each provider's daily budget it would take
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object at the end instead of a summary line
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(subcommand)]
    pub action: Option<HistoryAction>,
    /// How many lines
    #[arg(short = 'n', long = "lines", default_value_t = 20)]
    pub n: usize,
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
    /// Only lines whose text or translation contains TEXT (ignoring case)
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,
    /// Only lines of the [[games]] profile NAME
    #[arg(long, value_name = "NAME")]
    pub game: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum HistoryAction {
    /// Write the whole history, oldest first
    Export {
        /// jsonl (one JSON object per line) or csv
        #[arg(long, value_parser = ["jsonl", "csv"])]
        format: String,
        /// Write to FILE instead of standard output
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Delete every history line (the cache is kept)
    Clear {
        /// Confirm: the history cannot be brought back
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Write the documented example config to the config path (mode 0600)
    Init {
        /// Overwrite an existing file
        #[arg(long)]
        force: bool,
    },
    /// Print the config file's path
    Path,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Store a provider's key in credentials.toml beside the config (0600). The key is read from
    /// standard input, or asked for without echo on a terminal
    Set {
        /// The provider's `name` in the config (gemini, groq, ...)
        name: String,
        /// Store the key without testing it with one request first
        #[arg(long)]
        no_test: bool,
    },
    /// Remove a provider's stored key
    Remove {
        /// The provider's `name` in the config
        name: String,
    },
    /// Show which providers have a key and where it was found (never the key itself)
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Install (or rewrite) the login entry for this binary and start it
    Install,
    /// Stop and remove what `install` wrote, nothing else
    Uninstall,
    /// Whether the login entry is installed, enabled, running, and points at this binary
    Status {
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
}

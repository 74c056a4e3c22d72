//! `yaku history [-n N] [--grep TEXT] [--json]`, `history export`, `history clear`.

use std::io::Write;

use anyhow::Context;

use super::UsageError;
use super::args::{HistoryAction, HistoryArgs};
use crate::config::Config;
use crate::wire;

pub fn run(config: &Config, args: HistoryArgs) -> anyhow::Result<()> {
    use crate::adapters::store::ExportFormat;
    let store = wire::open_store_for_command(config)?;
    match args.action {
        Some(HistoryAction::Export { format, output }) => {
            let format = ExportFormat::parse(&format)
                .ok_or_else(|| UsageError(format!("unknown format \"{format}\"")))?;
            let count = match &output {
                Some(path) => {
                    let mut file = std::io::BufWriter::new(
                        crate::sys::private::create_private(path)
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
            let rows = store.history_of(args.n, args.grep.as_deref(), args.game.as_deref())?;
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

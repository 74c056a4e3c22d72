//! `yaku pick N`: the reader's choice among the last shown line's options. A store write, so
//! it works with or without a running daemon: the daemon's last shown line is the newest
//! shown history row.

use super::UsageError;
use crate::config::Config;
use crate::core::memory::cache_key;
use crate::core::store::Store;
use crate::wire;

pub fn run(config: &Config, n: u8) -> anyhow::Result<()> {
    let store = wire::open_store_for_command(config)?;
    let Some((id, text, options)) = store.last_shown()? else {
        anyhow::bail!("no line has been shown yet: nothing to pick from");
    };
    let Some(choice) = options.get(usize::from(n) - 1).cloned() else {
        return Err(UsageError(format!(
            "the last line has {} option{}; pick 1 to {}",
            options.len(),
            if options.len() == 1 { "" } else { "s" },
            options.len().max(1)
        ))
        .into());
    };
    store.set_chosen(id, n)?;
    // From now on the cache answers this line with the choice first.
    let request = wire::request_for(config, &text);
    let key = cache_key(
        &request.text,
        &request.source_language,
        &request.target_language,
        request.options,
        &request.instructions,
        &request.glossary,
    );
    if let Some(mut answer) = store.cache_get(&key)? {
        answer.options.retain(|o| *o != choice);
        answer.options.insert(0, choice.clone());
        store.cache_put(&key, &answer)?;
    }
    println!("{choice}");
    Ok(())
}

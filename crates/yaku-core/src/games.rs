//! Per-game profiles: which game a line belongs to, chosen by the window that is active when
//! the line arrives, and what that game changes in the request (its glossary, instructions,
//! source language and context length).

use std::sync::Arc;

use super::memory::Glossary;
use super::prompt::TranslationRequest;

/// What identifies the active window; each part may be missing (a window without the
/// property, a process that is gone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowInfo {
    /// `WM_CLASS` (instance and class, as "instance class").
    pub class: Option<String>,
    pub title: Option<String>,
    /// The executable's file name.
    pub process: Option<String>,
}

/// The active window port. `None`: no active window, or the platform cannot tell.
pub trait ActiveWindow: Send + Sync {
    fn active(&self) -> Option<WindowInfo>;
}

/// One `[[games]]` profile, validated. A `None` override leaves the global value.
#[derive(Debug, Clone)]
pub struct GameProfile {
    pub name: String,
    /// Matched against the window's class, title and process name.
    pub matcher: regex::Regex,
    /// Replaces the global glossary for this game's lines.
    pub glossary: Option<Glossary>,
    pub instructions: Option<String>,
    pub source_language: Option<String>,
    pub context_lines: Option<usize>,
}

impl GameProfile {
    /// Whether the regex finds the class, the title or the process name.
    pub fn matches(&self, w: &WindowInfo) -> bool {
        [&w.class, &w.title, &w.process]
            .into_iter()
            .flatten()
            .any(|s| self.matcher.is_match(s))
    }

    /// Applies this game's overrides to `request` (which has the global values).
    pub fn apply(&self, request: &mut TranslationRequest) {
        if let Some(i) = &self.instructions {
            request.instructions = i.clone();
        }
        if let Some(s) = &self.source_language {
            request.source_language = s.clone();
        }
        request.game = Some(self.name.clone());
    }
}

/// The profiles in file order; the first that matches wins.
#[derive(Debug, Clone, Default)]
pub struct Games {
    profiles: Vec<Arc<GameProfile>>,
}

impl Games {
    pub fn new(profiles: Vec<GameProfile>) -> Self {
        Self {
            profiles: profiles.into_iter().map(Arc::new).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.profiles.iter().map(|p| p.name.as_str())
    }

    /// The profile for a line arriving while `window` is active; none without a window.
    pub fn choose(&self, window: Option<&WindowInfo>) -> Option<Arc<GameProfile>> {
        let w = window?;
        self.profiles.iter().find(|p| p.matches(w)).cloned()
    }

    /// The profile named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<GameProfile>> {
        self.profiles.iter().find(|p| p.name == name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str, re: &str) -> GameProfile {
        GameProfile {
            name: name.into(),
            matcher: regex::Regex::new(re).unwrap(),
            glossary: None,
            instructions: Some(format!("{name} rules")),
            source_language: None,
            context_lines: None,
        }
    }

    fn window(class: Option<&str>, title: Option<&str>, process: Option<&str>) -> WindowInfo {
        WindowInfo {
            class: class.map(Into::into),
            title: title.map(Into::into),
            process: process.map(Into::into),
        }
    }

    #[test]
    fn the_first_profile_matching_class_title_or_process_wins_and_no_window_means_none() {
        let games = Games::new(vec![
            profile("sakura", "(?i)sakura"),
            profile("steins", "^steins"),
            profile("any", "."),
        ]);
        let chosen = |w: Option<WindowInfo>| games.choose(w.as_ref()).map(|p| p.name.clone());
        for (w, want) in [
            (
                Some(window(Some("sakura.exe Wine"), None, None)),
                Some("sakura"),
            ),
            (
                Some(window(None, Some("Sakura no Uta"), None)),
                Some("sakura"),
            ),
            (Some(window(None, None, Some("steins.exe"))), Some("steins")),
            (Some(window(Some("xterm XTerm"), None, None)), Some("any")),
            (Some(window(None, None, None)), None),
            (None, None),
        ] {
            assert_eq!(chosen(w.clone()).as_deref(), want, "{w:?}");
        }
    }

    #[test]
    fn a_profile_overrides_only_what_it_sets() {
        let mut p = profile("sakura", "x");
        p.source_language = Some("Chinese".into());
        let mut r = TranslationRequest {
            source_language: "Japanese".into(),
            target_language: "English".into(),
            instructions: "global".into(),
            ..Default::default()
        };
        p.apply(&mut r);
        assert_eq!(r.instructions, "sakura rules");
        assert_eq!(r.source_language, "Chinese");
        assert_eq!(r.target_language, "English");
        assert_eq!(r.game.as_deref(), Some("sakura"));
        p.instructions = None;
        let mut r = TranslationRequest {
            instructions: "global".into(),
            ..Default::default()
        };
        p.apply(&mut r);
        assert_eq!(r.instructions, "global");
    }
}

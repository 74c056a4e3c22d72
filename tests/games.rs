//! Per-game profiles and live edits on a real (virtual) desktop (see tests/desktop/ for the
//! harness): two windows with different WM_CLASS, made here with x11rb, and the active one
//! switched by setting `_NET_ACTIVE_WINDOW` on the root as a window manager would (none
//! runs). Each line's request must carry its own game's glossary and its history row its game;
//! saved edits to the glossary files and the config apply without a command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "desktop/mod.rs"]
#[allow(unused_imports)] // the harness exports more than these tests use
mod desktop;

use std::path::{Path, PathBuf};

use desktop::*;
use serde_json::Value;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, ConnectionExt as _, CreateWindowAux, PropMode, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

/// Two game windows on the test's X server, and the root's active-window property.
struct Windows {
    conn: RustConnection,
    root: Window,
    active: u32,
}

impl Windows {
    fn open(display: &str) -> Windows {
        let (conn, screen) = x11rb::connect(Some(display)).unwrap();
        let root = conn.setup().roots[screen].root;
        let active = conn
            .intern_atom(false, b"_NET_ACTIVE_WINDOW")
            .unwrap()
            .reply()
            .unwrap()
            .atom;
        Windows { conn, root, active }
    }

    /// A window whose WM_CLASS is `instance\0class\0`.
    fn window(&self, instance: &str, class: &str) -> Window {
        let w = self.conn.generate_id().unwrap();
        self.conn
            .create_window(
                x11rb::COPY_DEPTH_FROM_PARENT,
                w,
                self.root,
                0,
                0,
                10,
                10,
                0,
                WindowClass::INPUT_OUTPUT,
                0,
                &CreateWindowAux::new(),
            )
            .unwrap();
        let wm_class = format!("{instance}\0{class}\0");
        self.conn
            .change_property8(
                PropMode::REPLACE,
                w,
                AtomEnum::WM_CLASS,
                AtomEnum::STRING,
                wm_class.as_bytes(),
            )
            .unwrap();
        self.conn.flush().unwrap();
        w
    }

    fn activate(&self, w: Window) {
        self.conn
            .change_property32(
                PropMode::REPLACE,
                self.root,
                self.active,
                AtomEnum::WINDOW,
                &[w],
            )
            .unwrap();
        self.conn.sync().unwrap();
    }
}

/// The daemon's config: the desktop tests' keys plus `games`.
fn config_text(env: &DesktopEnv, games: &str) -> String {
    format!(
        "{}\n{games}",
        YakuConfig::new(&env.provider.url())
            .poll_interval_ms(100)
            .to_toml()
    )
}

const TWO_GAMES: &str = r#"
[[games]]
name = "sakura"
match = "^sakura"
glossary_file = "sakura.tsv"

[[games]]
name = "steins"
match = "Steins"
glossary_file = "steins.tsv"
instructions = "Lab member slang."
"#;

fn start(env: &DesktopEnv, config: &Path) -> Yaku {
    let yaku = env.spawn_yaku_at(config);
    let owner = env.clipboard_owner();
    let probe = owner.offer("games test: is the daemon polling?");
    wait_until(
        secs(10),
        "the daemon's first clipboard read",
        || owner.served(probe).targets >= 1,
        || format!("{}\n{}", env.report(), yaku.log()),
    );
    env.keep_owner(owner);
    yaku
}

/// Copies `line` and returns the body of the request it became.
fn translate(env: &DesktopEnv, yaku: &Yaku, line: &str) -> String {
    let owner = env.clipboard_owner();
    owner.offer(line);
    wait_until(
        secs(10),
        &format!("a request for {line}"),
        || env.provider.lines().iter().any(|l| l == line),
        || format!("{}\n{}", env.report(), yaku.log()),
    );
    env.keep_owner(owner);
    env.provider
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.line.as_deref() == Some(line))
        .unwrap()
        .body
}

fn reloads(yaku: &Yaku) -> usize {
    yaku.log().matches("reloaded the config").count()
}

/// Writes `text` to `path` as an editor that saves in place does.
fn save(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Writes `text` to a temporary file beside `path` and renames it over `path`, as vim and
/// most IDEs save.
fn save_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("tsv.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn history(env: &DesktopEnv, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["history", "--json"];
    all.extend_from_slice(args);
    let (st, out, err) = env.yaku_command(&all);
    assert!(st.success(), "{out} {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn setup(env: &DesktopEnv) -> (PathBuf, PathBuf, PathBuf) {
    let config = env.write_config_text(&config_text(env, TWO_GAMES));
    let dir = config.parent().unwrap().to_path_buf();
    let sakura = dir.join("sakura.tsv");
    let steins = dir.join("steins.tsv");
    save(&sakura, "先輩\tSAKURA_ONE\n");
    save(&steins, "先輩\tSTEINS_ONE\n");
    (config, sakura, steins)
}

#[test]
fn each_line_carries_the_active_windows_game_glossary_and_history_keeps_its_game() {
    let env = DesktopEnv::start();
    let (config, _, _) = setup(&env);
    let x = Windows::open(&env.display());
    let sakura = x.window("sakura.exe", "Wine");
    let steins = x.window("game", "SteinsGate");
    x.activate(sakura);
    let yaku = start(&env, &config);

    let body = translate(&env, &yaku, "先輩、おはようございます。");
    assert!(
        body.contains("SAKURA_ONE") && !body.contains("STEINS_ONE"),
        "{body}"
    );
    x.activate(steins);
    let body = translate(&env, &yaku, "先輩、ラボに来てくれ。");
    assert!(
        body.contains("STEINS_ONE") && !body.contains("SAKURA_ONE"),
        "{body}"
    );
    assert!(
        body.contains("Lab member slang."),
        "the game's instructions: {body}"
    );
    assert!(
        !body.contains("おはようございます"),
        "the other game's line is no context: {body}"
    );
    let (st, out, err) = env.yaku_command(&["status", "--json"]);
    assert!(st.success(), "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["game"], "steins");
    let (_, text, _) = env.yaku_command(&["status"]);
    assert!(text.contains("game profile: steins"), "{text}");
    let (_, out, err) = env.yaku_command(&[
        "check",
        "--offline",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]);
    let check: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert_eq!(check["game"]["active"], "steins", "{check}");
    assert_eq!(
        check["game"]["profiles"],
        serde_json::json!(["sakura", "steins"])
    );
    assert_eq!(check["daemon"]["game"], "steins");

    // No active window: no profile, the global (empty) glossary.
    x.activate(0);
    let body = translate(&env, &yaku, "先輩、さようなら。");
    assert!(
        !body.contains("SAKURA_ONE") && !body.contains("STEINS_ONE"),
        "{body}"
    );

    let games: Vec<Value> = history(&env, &[])
        .iter()
        .map(|r| r["game"].clone())
        .collect();
    assert_eq!(
        games,
        [Value::from("sakura"), Value::from("steins"), Value::Null]
    );
    let only: Vec<Value> = history(&env, &["--game", "steins"])
        .iter()
        .map(|r| r["text"].clone())
        .collect();
    assert_eq!(only, [Value::from("先輩、ラボに来てくれ。")]);
    let (st, out, err) = env.yaku_command(&["stats", "--json", "--game", "sakura"]);
    assert!(st.success(), "{err}");
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["lines"], 1, "{stats}");

    // A reload that changes the profiles takes effect for the next line.
    let renamed = TWO_GAMES.replace("name = \"sakura\"", "name = \"sakura-2\"");
    save(&config, &config_text(&env, &renamed));
    let (st, out, err) = env.yaku_command(&["reload"]);
    assert!(st.success(), "{out} {err}");
    x.activate(sakura);
    translate(&env, &yaku, "先輩、また明日。");
    let last = history(&env, &["-n", "1"]);
    assert_eq!(last[0]["game"], "sakura-2");
}

#[test]
fn saved_glossary_edits_apply_to_the_next_line_and_a_broken_config_is_refused() {
    let env = DesktopEnv::start();
    let (config, sakura_tsv, steins_tsv) = setup(&env);
    let x = Windows::open(&env.display());
    let sakura = x.window("sakura", "Sakura");
    let steins = x.window("steins", "Steins");
    x.activate(sakura);
    let yaku = start(&env, &config);
    let body = translate(&env, &yaku, "先輩、一行目です。");
    assert!(body.contains("SAKURA_ONE"), "{body}");

    // Saved in place.
    let before = reloads(&yaku);
    let saved = std::time::Instant::now();
    save(&sakura_tsv, "先輩\tSAKURA_TWO\n");
    wait_until(
        secs(5),
        "the reload after the glossary was saved",
        || reloads(&yaku) > before,
        || yaku.log(),
    );
    eprintln!(
        "a saved glossary was reloaded {:?} after the save",
        saved.elapsed()
    );
    let body = translate(&env, &yaku, "先輩、二行目です。");
    assert!(body.contains("SAKURA_TWO"), "{body}");

    // Replaced by a rename: the new file is followed, and so are its later edits.
    x.activate(steins);
    for (n, rendering) in [(1, "STEINS_TWO"), (2, "STEINS_THREE")] {
        let before = reloads(&yaku);
        save_by_rename(&steins_tsv, &format!("先輩\t{rendering}\n"));
        wait_until(
            secs(5),
            "the reload after the glossary was replaced",
            || reloads(&yaku) > before,
            || yaku.log(),
        );
        let body = translate(&env, &yaku, &format!("先輩、置き換え{n}回目。"));
        assert!(body.contains(rendering), "{body}");
    }

    // A broken config: refused with one notification, the running one kept.
    let good = std::fs::read_to_string(&config).unwrap();
    save(
        &config,
        &format!("{good}\n[[games]]\nname = \"bad\"\nmatch = \"(unclosed\"\n"),
    );
    wait_until(
        secs(5),
        "the notification that the config was refused",
        || {
            env.yaku_notifications()
                .iter()
                .any(|n| n.summary == "yaku: config not reloaded")
        },
        || format!("{}\n{}", env.report(), yaku.log()),
    );
    let refused: Vec<_> = env
        .yaku_notifications()
        .into_iter()
        .filter(|n| n.summary == "yaku: config not reloaded")
        .collect();
    assert!(
        refused[0].body.contains("games[2].match"),
        "{:?}",
        refused[0]
    );
    let body = translate(&env, &yaku, "先輩、壊れた設定の後。");
    assert!(
        body.contains("STEINS_THREE"),
        "the old config stays: {body}"
    );
    assert_eq!(refused.len(), 1, "one notification for one save");
    assert!(yaku.is_running());
}

#[test]
fn the_x11_adapter_reads_the_active_windows_class_title_and_process_and_nothing_without_one() {
    use ::yaku::adapters::window::SystemActiveWindow;
    use ::yaku::core::games::{ActiveWindow, WindowInfo};
    let env = DesktopEnv::start();
    let x = Windows::open(&env.display());
    let adapter = SystemActiveWindow::on_display(&env.display());
    assert_eq!(adapter.active(), None, "no _NET_ACTIVE_WINDOW on the root");

    let w = x.window("vn", "VisualNovel");
    let atom = |name: &[u8]| {
        x.conn
            .intern_atom(false, name)
            .unwrap()
            .reply()
            .unwrap()
            .atom
    };
    let (net_name, utf8, pid) = (
        atom(b"_NET_WM_NAME"),
        atom(b"UTF8_STRING"),
        atom(b"_NET_WM_PID"),
    );
    x.conn
        .change_property8(PropMode::REPLACE, w, net_name, utf8, "桜の詩".as_bytes())
        .unwrap();
    x.conn
        .change_property32(
            PropMode::REPLACE,
            w,
            pid,
            AtomEnum::CARDINAL,
            &[std::process::id()],
        )
        .unwrap();
    x.activate(w);
    let exe = std::env::current_exe().unwrap();
    assert_eq!(
        adapter.active(),
        Some(WindowInfo {
            class: Some("vn VisualNovel".into()),
            title: Some("桜の詩".into()),
            process: Some(exe.file_name().unwrap().to_string_lossy().into_owned()),
        })
    );

    // A window with only the old WM_NAME; then one that is gone.
    let old = x.window("old", "Old");
    x.conn
        .change_property8(
            PropMode::REPLACE,
            old,
            AtomEnum::WM_NAME,
            AtomEnum::STRING,
            b"Legacy",
        )
        .unwrap();
    x.activate(old);
    let info = adapter.active().unwrap();
    assert_eq!(info.title.as_deref(), Some("Legacy"));
    assert_eq!(info.process, None);
    x.conn.destroy_window(old).unwrap();
    x.conn.sync().unwrap();
    assert_eq!(adapter.active(), None, "the active window no longer exists");
    x.activate(0);
    assert_eq!(adapter.active(), None);
}

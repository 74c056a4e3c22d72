//! The files and values a login service is made of, rendered and read back by pure functions.
//!
//! They compile on every platform so that all four formats are tested everywhere. Paths that
//! are not valid UTF-8 are rendered lossily; `install` refuses such a binary before rendering.

use std::path::{Path, PathBuf};

/// The launchd label, also the plist's file stem.
pub const LAUNCH_AGENT_LABEL: &str = "io.github.yaku";

/// The first line of each file yaku writes, so a reader knows where it came from.
const WRITTEN_BY: &str = "Written by `yaku service install`; `yaku service uninstall` removes it.";

/// The systemd user unit that runs `<binary> run` for the graphical session.
pub fn render_systemd_unit(binary: &Path) -> String {
    render_systemd_unit_for(binary, None)
}

/// [`render_systemd_unit`] running `<binary> run --config <config>` when `config` is given
/// (an absolute path: the service does not start where `install` ran).
pub fn render_systemd_unit_for(binary: &Path, config: Option<&Path>) -> String {
    let mut exec = systemd_word(&binary.to_string_lossy());
    exec.push_str(" run");
    if let Some(c) = config {
        exec.push_str(" --config ");
        exec.push_str(&systemd_word(&c.to_string_lossy()));
    }
    format!(
        "# {WRITTEN_BY}
[Unit]
Description=yaku: clipboard translation for visual-novel readers
Documentation=man:yaku(1)
# yaku needs the display: start with the graphical session, stop with it.
PartOf=graphical-session.target
After=graphical-session.target

[Service]
ExecStart={exec}
Restart=on-failure
RestartSec=5
# Exit 78 (EX_CONFIG) is a config error: restarting cannot fix it.
RestartPreventExitStatus=78
TimeoutStopSec=10

[Install]
WantedBy=graphical-session.target
"
    )
}

/// The XDG autostart entry that runs `<binary> run` at graphical login.
pub fn render_autostart_desktop(binary: &Path) -> String {
    render_autostart_desktop_for(binary, None)
}

/// [`render_autostart_desktop`] running `<binary> run --config <config>` when `config` is given.
pub fn render_autostart_desktop_for(binary: &Path, config: Option<&Path>) -> String {
    let mut exec = desktop_exec_arg(&binary.to_string_lossy());
    exec.push_str(" run");
    if let Some(c) = config {
        exec.push_str(" --config ");
        exec.push_str(&desktop_exec_arg(&c.to_string_lossy()));
    }
    format!(
        "# {WRITTEN_BY}
[Desktop Entry]
Type=Application
Name=yaku
Comment=Clipboard translation for visual-novel readers
Exec={exec}
X-GNOME-Autostart-enabled=true
NoDisplay=true
Terminal=false
"
    )
}

/// The LaunchAgent plist that runs `<binary> run` at login and again after a crash, its output
/// going to `log_dir`.
pub fn render_launch_agent(binary: &Path, log_dir: &Path) -> String {
    render_launch_agent_for(binary, log_dir, None)
}

/// [`render_launch_agent`] running `<binary> run --config <config>` when `config` is given.
pub fn render_launch_agent_for(binary: &Path, log_dir: &Path, config: Option<&Path>) -> String {
    let program = crate::sys::xml::escape(&binary.to_string_lossy());
    let config_args = config.map_or_else(String::new, |c| {
        format!(
            "\n\t\t<string>--config</string>\n\t\t<string>{}</string>",
            crate::sys::xml::escape(&c.to_string_lossy())
        )
    });
    let stdout = crate::sys::xml::escape(&log_dir.join("launchd.stdout.log").to_string_lossy());
    let stderr = crate::sys::xml::escape(&log_dir.join("launchd.stderr.log").to_string_lossy());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- {WRITTEN_BY} -->
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>{LAUNCH_AGENT_LABEL}</string>
	<key>ProgramArguments</key>
	<array>
		<string>{program}</string>
		<string>run</string>{config_args}
	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>ProcessType</key>
	<string>Interactive</string>
	<key>StandardOutPath</key>
	<string>{stdout}</string>
	<key>StandardErrorPath</key>
	<string>{stderr}</string>
</dict>
</plist>
"#
    )
}

/// The data of the `yaku` value under the `Run` key: `"<binary>" run`.
pub fn render_run_value(binary: &Path) -> String {
    render_run_value_for(binary, None)
}

/// [`render_run_value`] with `--config "<config>"` when `config` is given.
pub fn render_run_value_for(binary: &Path, config: Option<&Path>) -> String {
    // Always quoted: Windows splits an unquoted path at its first space.
    let mut value = format!("\"{}\" run", binary.to_string_lossy());
    if let Some(c) = config {
        value.push_str(&format!(" --config \"{}\"", c.to_string_lossy()));
    }
    value
}

/// The data of the value `name` in `reg query <key> /v <name>` output (the line
/// `    <name>    REG_<TYPE>    <data>`), with its type; `None` when no line names it.
pub fn parse_reg_query(output: &str, name: &str) -> Option<(String, String)> {
    output.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix(name)?;
        // The name must end where the type's column starts (`yaku` is not `yakuw`).
        if !rest.starts_with(char::is_whitespace) {
            return None;
        }
        let rest = rest.trim_start();
        let (kind, data) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        kind.starts_with("REG_")
            .then(|| (kind.to_owned(), data.trim().to_owned()))
    })
}

/// Whether Windows runs a `Run` value, from its `StartupApproved\Run` value as `reg query`
/// prints a REG_BINARY (hex digits): the first byte 0x02 or 0x06 is enabled, 0x03 or 0x07
/// switched off by the user (Task Manager's Startup apps, Settings); anything else unknown.
pub fn startup_approved_enabled(hex: &str) -> Option<bool> {
    let first = u8::from_str_radix(hex.trim().get(..2)?, 16).ok()?;
    match first {
        0x02 | 0x06 => Some(true),
        0x03 | 0x07 => Some(false),
        _ => None,
    }
}

/// Why systemd would refuse `binary` as an executable path, if it would.
///
/// systemd parses any path that [`render_systemd_unit`] writes, but then rejects an executable
/// whose name holds quotes, backslashes or control characters.
pub fn systemd_path_problem(binary: &Path) -> Option<&'static str> {
    let text = binary.to_string_lossy();
    if text.chars().any(|c| c.is_control()) {
        Some("it contains a control character")
    } else if text.contains(['"', '\'', '\\']) {
        Some("it contains a quote or a backslash")
    } else {
        None
    }
}

/// The program of the first `ExecStart=` line of a systemd unit, unquoted.
pub fn parse_systemd_exec_start(unit: &str) -> Option<PathBuf> {
    let value = unit.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        let value = value.trim_matches(SYSTEMD_WHITESPACE);
        (key.trim_matches(SYSTEMD_WHITESPACE) == "ExecStart" && !value.is_empty()).then_some(value)
    })?;
    // Prefixes such as `-` (ignore failure) or `@` (own argv[0]) come before the path.
    let value = value.trim_start_matches(['-', '@', ':', '+', '!']);
    // Specifiers are expanded on the raw line, before unquoting.
    let value = value.replace("%%", "%");
    systemd_first_word(&value).map(PathBuf::from)
}

/// The program of a desktop entry's `Exec=` key, unquoted.
pub fn parse_desktop_exec(entry: &str) -> Option<PathBuf> {
    let raw = desktop_key(entry, "Exec")?;
    // The string escapes (`\\`, `\s`, ...) apply before the Exec quoting rules.
    let value = unescape_desktop_string(raw);
    desktop_first_arg(&value).map(|arg| PathBuf::from(arg.replace("%%", "%")))
}

/// Whether a desktop autostart entry is switched on (not `Hidden=true`, not
/// `X-GNOME-Autostart-enabled=false`).
pub fn desktop_entry_enabled(entry: &str) -> bool {
    desktop_key(entry, "Hidden") != Some("true")
        && desktop_key(entry, "X-GNOME-Autostart-enabled") != Some("false")
}

/// The first string of a LaunchAgent's `ProgramArguments`, unescaped.
pub fn parse_launch_agent_program(plist: &str) -> Option<PathBuf> {
    let after_key = plist.split_once("<key>ProgramArguments</key>")?.1;
    let array = after_key.trim_start().strip_prefix("<array>")?;
    let first = array.trim_start().strip_prefix("<string>")?;
    let (text, _) = first.split_once("</string>")?;
    xml_unescape(text).map(PathBuf::from)
}

/// The program of a `Run` value such as `"C:\Program Files\yaku\yaku.exe" run`.
pub fn parse_run_value(value: &str) -> Option<PathBuf> {
    let value = value.trim();
    let program = match value.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"')?.0,
        None => value.split_whitespace().next()?,
    };
    (!program.is_empty()).then(|| PathBuf::from(program))
}

/// One word for a systemd command line: bare when it is plain, else double-quoted.
fn systemd_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_.,+-:=@~%".contains(c) || !c.is_ascii());
    if plain && !text.chars().any(char::is_control) {
        // `%` starts a specifier everywhere on the line, quoted or not.
        return text.replace('%', "%%");
    }
    let mut word = String::with_capacity(text.len() + 2);
    word.push('"');
    for c in text.chars() {
        match c {
            '"' => word.push_str("\\\""),
            '\\' => word.push_str("\\\\"),
            '%' => word.push_str("%%"),
            c if c.is_ascii_control() => word.push_str(&format!("\\x{:02x}", u32::from(c))),
            c if c.is_control() => word.push_str(&format!("\\u{:04x}", u32::from(c))),
            // `$` needs no escape: systemd never expands variables in the executable path.
            c => word.push(c),
        }
    }
    word.push('"');
    word
}

/// What systemd splits words at (not Unicode whitespace).
const SYSTEMD_WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];

/// The first word of a systemd command line, with quotes and C escapes resolved.
fn systemd_first_word(line: &str) -> Option<String> {
    let mut chars = line.trim_start_matches(SYSTEMD_WHITESPACE).chars();
    let mut word = String::new();
    let mut quote = None;
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.push(systemd_unescape(&mut chars)?),
            '"' | '\'' if quote == Some(c) => quote = None,
            '"' | '\'' if quote.is_none() => quote = Some(c),
            c if quote.is_none() && SYSTEMD_WHITESPACE.contains(&c) => break,
            c => word.push(c),
        }
    }
    (quote.is_none() && !word.is_empty()).then_some(word)
}

/// The character a C-style escape in a unit file stands for; `chars` is just past the `\`.
fn systemd_unescape(chars: &mut std::str::Chars<'_>) -> Option<char> {
    let c = chars.next()?;
    let hex = |chars: &mut std::str::Chars<'_>, n: usize| {
        let digits: String = chars.by_ref().take(n).collect();
        u32::from_str_radix(&digits, 16)
            .ok()
            .and_then(char::from_u32)
    };
    Some(match c {
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        's' => ' ',
        't' => '\t',
        'v' => '\u{b}',
        'x' => hex(chars, 2)?,
        'u' => hex(chars, 4)?,
        'U' => hex(chars, 8)?,
        c @ '0'..='7' => {
            let rest: String = chars.by_ref().take(2).collect();
            char::from_u32(u32::from_str_radix(&format!("{c}{rest}"), 8).ok()?)?
        }
        c => c,
    })
}

/// Characters the Desktop Entry spec reserves in Exec arguments: any of them needs quotes.
const DESKTOP_RESERVED: &str = " \t\n\"'\\><~|&;$*?#()`";

/// One Exec argument as written in the file: Exec-quoted, then string-escaped.
fn desktop_exec_arg(text: &str) -> String {
    let mut arg = String::with_capacity(text.len() + 2);
    let quoted = text.is_empty() || text.contains(|c| DESKTOP_RESERVED.contains(c));
    if quoted {
        arg.push('"');
    }
    for c in text.chars() {
        match c {
            '"' | '`' | '$' | '\\' if quoted => {
                arg.push('\\');
                arg.push(c);
            }
            '%' => arg.push_str("%%"),
            c => arg.push(c),
        }
    }
    if quoted {
        arg.push('"');
    }
    // The string escapes apply on top, so each backslash written above doubles.
    let mut escaped = String::with_capacity(arg.len());
    for c in arg.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\t' => escaped.push_str("\\t"),
            '\r' => escaped.push_str("\\r"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The raw value of `key` in a desktop file's `[Desktop Entry]` group.
fn desktop_key<'a>(entry: &'a str, key: &str) -> Option<&'a str> {
    let mut in_group = false;
    for line in entry.lines() {
        let line = line.trim_start_matches([' ', '\t']);
        if line.starts_with('[') {
            in_group = line.trim_end_matches([' ', '\t', '\r']) == "[Desktop Entry]";
        } else if in_group
            && !line.starts_with('#')
            && let Some((k, v)) = line.split_once('=')
            && k.trim_end_matches([' ', '\t']) == key
        {
            return Some(v.trim_start_matches([' ', '\t']));
        }
    }
    None
}

/// A desktop file string value with `\s`, `\n`, `\t`, `\r` and `\\` resolved.
fn unescape_desktop_string(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            // Not a string escape: left for the Exec quoting rules.
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The first argument of an (already string-unescaped) Exec value.
fn desktop_first_arg(value: &str) -> Option<String> {
    let value = value.trim_start_matches([' ', '\t']);
    let Some(quoted) = value.strip_prefix('"') else {
        let arg = value.split([' ', '\t']).next()?;
        return (!arg.is_empty()).then(|| arg.to_owned());
    };
    let mut arg = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(arg),
            '\\' => match chars.next()? {
                c @ ('"' | '`' | '$' | '\\') => arg.push(c),
                c => {
                    arg.push('\\');
                    arg.push(c);
                }
            },
            c => arg.push(c),
        }
    }
    None // unterminated quote
}

/// XML character data with its entity and character references resolved.
fn xml_unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let (entity, after) = rest[amp + 1..].split_once(';')?;
        out.push(match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = entity.strip_prefix('#')?;
                let value = match code.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => code.parse().ok()?,
                };
                char::from_u32(value)?
            }
        });
        rest = after;
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn systemd_word_leaves_a_plain_path_bare() {
        assert_eq!(systemd_word("/usr/bin/yaku"), "/usr/bin/yaku");
    }

    #[test]
    fn systemd_word_quotes_spaces_and_doubles_percent_signs() {
        assert_eq!(
            systemd_word("/opt/my apps/100%/yaku"),
            "\"/opt/my apps/100%%/yaku\""
        );
        assert_eq!(systemd_word("/opt/100%/yaku"), "/opt/100%%/yaku");
    }

    #[test]
    fn systemd_word_escapes_quotes_backslashes_and_control_characters() {
        assert_eq!(systemd_word("/a\"b\\c\td"), r#""/a\"b\\c\x09d""#);
    }

    #[test]
    fn systemd_path_problem_flags_what_systemd_refuses() {
        assert_eq!(
            systemd_path_problem(Path::new("/opt/my apps/$HOME/yaku")),
            None
        );
        assert!(systemd_path_problem(Path::new("/opt/it's/yaku")).is_some());
        assert!(systemd_path_problem(Path::new("/opt/a\\b/yaku")).is_some());
        assert!(systemd_path_problem(Path::new("/opt/a\nb/yaku")).is_some());
    }

    #[test]
    fn exec_start_parser_reads_prefixes_single_quotes_and_escapes() {
        assert_eq!(
            parse_systemd_exec_start("[Service]\nExecStart=-'/opt/a b/yaku' run\n"),
            Some(PathBuf::from("/opt/a b/yaku"))
        );
        assert_eq!(
            parse_systemd_exec_start("ExecStart = /opt/a\\sb/yaku run"),
            Some(PathBuf::from("/opt/a b/yaku"))
        );
        assert_eq!(parse_systemd_exec_start("[Service]\nExecStart=\n"), None);
        assert_eq!(
            parse_systemd_exec_start("ExecStart=\"/unterminated run"),
            None
        );
    }

    #[test]
    fn desktop_exec_arg_quotes_reserved_characters_and_doubles_backslashes_twice() {
        assert_eq!(desktop_exec_arg("/usr/bin/yaku"), "/usr/bin/yaku");
        assert_eq!(
            desktop_exec_arg("/opt/my apps/yaku"),
            "\"/opt/my apps/yaku\""
        );
        // `\` → `\\` (Exec quoting) → `\\\\` (string escape); `$` → `\$` → `\\$`.
        assert_eq!(desktop_exec_arg("/a\\b$c"), r#""/a\\\\b\\$c""#);
        assert_eq!(desktop_exec_arg("/100%/yaku"), "/100%%/yaku");
    }

    #[test]
    fn desktop_entry_enabled_honours_hidden_and_the_gnome_switch() {
        let base = "[Desktop Entry]\nType=Application\nExec=/x run\n";
        assert!(desktop_entry_enabled(base));
        assert!(!desktop_entry_enabled(&format!("{base}Hidden=true\n")));
        assert!(!desktop_entry_enabled(&format!(
            "{base}X-GNOME-Autostart-enabled=false\n"
        )));
        // Keys of another group do not count.
        assert!(desktop_entry_enabled(&format!(
            "{base}[Desktop Action x]\nHidden=true\n"
        )));
    }

    #[test]
    fn run_value_parser_reads_quoted_and_bare_programs() {
        assert_eq!(
            parse_run_value(r#""C:\Program Files\yaku\yaku.exe" run"#),
            Some(PathBuf::from(r"C:\Program Files\yaku\yaku.exe"))
        );
        assert_eq!(
            parse_run_value(r"C:\yaku\yaku.exe run"),
            Some(PathBuf::from(r"C:\yaku\yaku.exe"))
        );
        assert_eq!(parse_run_value("\"unterminated"), None);
    }

    #[test]
    fn reg_query_parser_finds_the_named_value_and_its_type() {
        let run = "\r\nHKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\r\n    yaku    REG_SZ    \"C:\\yaku\\yakuw.exe\" run\r\n\r\n";
        let approved = "\nHKEY_CURRENT_USER\\...\\StartupApproved\\Run\n    yakuw    REG_BINARY    020000\n    yaku    REG_BINARY    030000000000000000000000\n";
        type Case<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);
        let cases: [Case; 5] = [
            (run, "yaku", Some(("REG_SZ", "\"C:\\yaku\\yakuw.exe\" run"))),
            (
                approved,
                "yaku",
                Some(("REG_BINARY", "030000000000000000000000")),
            ),
            (approved, "yakuw", Some(("REG_BINARY", "020000"))),
            (run, "other", None),
            ("    yaku    REG_BINARY\n", "yaku", Some(("REG_BINARY", ""))),
        ];
        for (output, name, want) in cases {
            let want = want.map(|(k, d)| (k.to_owned(), d.to_owned()));
            assert_eq!(parse_reg_query(output, name), want, "{name} in {output:?}");
        }
    }

    #[test]
    fn startup_approved_first_byte_says_enabled_or_switched_off() {
        let cases = [
            ("020000000000000000000000", Some(true)),
            ("060000000000000000000000", Some(true)),
            ("03000000D0A5A4E1C1B3D901", Some(false)),
            ("07000000d0a5a4e1c1b3d901", Some(false)),
            ("  02  ", Some(true)),
            ("01000000", None),
            ("", None),
            ("0", None),
            ("zz0000", None),
        ];
        for (hex, want) in cases {
            assert_eq!(startup_approved_enabled(hex), want, "{hex:?}");
        }
    }

    #[test]
    fn xml_unescape_resolves_character_references() {
        assert_eq!(
            xml_unescape("a&#38;b&#x3C;c&amp;").as_deref(),
            Some("a&b<c&")
        );
        assert_eq!(xml_unescape("a&bogus;"), None);
    }

    /// Absolute paths made of any characters but NUL (which no path can hold).
    fn any_path() -> impl Strategy<Value = String> {
        "(/[^\u{0}/]{1,12}){1,4}"
    }

    proptest! {
        #[test]
        fn systemd_unit_round_trips_any_path(path in any_path()) {
            let unit = render_systemd_unit(Path::new(&path));
            prop_assert_eq!(parse_systemd_exec_start(&unit), Some(PathBuf::from(&path)));
        }

        #[test]
        fn autostart_entry_round_trips_any_path(path in any_path()) {
            let entry = render_autostart_desktop(Path::new(&path));
            prop_assert_eq!(parse_desktop_exec(&entry), Some(PathBuf::from(&path)));
            // However odd the path, the entry stays one Exec line.
            prop_assert_eq!(entry.lines().filter(|l| l.starts_with("Exec=")).count(), 1);
            prop_assert_eq!(entry.lines().count(), 9);
        }

        #[test]
        fn launch_agent_round_trips_any_path(path in any_path()) {
            let plist = render_launch_agent(Path::new(&path), Path::new("/logs"));
            prop_assert_eq!(parse_launch_agent_program(&plist), Some(PathBuf::from(&path)));
        }

        #[test]
        fn run_value_round_trips_any_windows_path(path in r#"[A-Z]:(\\[^"\\\u{0}]{1,12}){1,4}"#) {
            let value = render_run_value(Path::new(&path));
            prop_assert_eq!(parse_run_value(&value), Some(PathBuf::from(&path)));
        }
    }
}

//! `yaku service`: the rendered unit, autostart entry, plist and Run value as snapshots, the unit
//! checked by `systemd-analyze verify`, and install / status / uninstall in a temporary home with
//! a fake `systemctl`, with and without a reachable user manager.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::path::Path;

use yaku::service::{
    render_autostart_desktop, render_launch_agent, render_run_value, render_systemd_unit,
};

const PLAIN: &str = "/usr/bin/yaku";
const SPACES: &str = "/home/mio/My Games/yaku tools/yaku";

/// Compares `actual` with `tests/snapshots/service/<name>`, showing both on a mismatch.
fn assert_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots/service")
        .join(name);
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        actual == expected,
        "{name} differs from its snapshot {}\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn systemd_unit_matches_its_snapshot() {
    assert_snapshot("plain.service", &render_systemd_unit(Path::new(PLAIN)));
}

#[test]
fn systemd_unit_quotes_a_binary_path_with_spaces() {
    assert_snapshot("spaces.service", &render_systemd_unit(Path::new(SPACES)));
}

#[test]
fn autostart_entry_matches_its_snapshot() {
    assert_snapshot("plain.desktop", &render_autostart_desktop(Path::new(PLAIN)));
}

#[test]
fn autostart_entry_quotes_a_binary_path_with_spaces() {
    assert_snapshot(
        "spaces.desktop",
        &render_autostart_desktop(Path::new(SPACES)),
    );
}

#[test]
fn launch_agent_matches_its_snapshot() {
    let plist = render_launch_agent(
        Path::new("/Applications/yaku/yaku"),
        Path::new("/Users/mio/Library/Logs/yaku"),
    );
    assert_snapshot("plain.plist", &plist);
}

#[test]
fn launch_agent_escapes_xml_in_a_binary_path_with_spaces() {
    let plist = render_launch_agent(
        Path::new("/Users/mio/Tom & Mio's Tools/yaku"),
        Path::new("/Users/mio/Library/Application Support/yaku/logs"),
    );
    assert_snapshot("spaces.plist", &plist);
}

#[test]
fn run_value_quotes_the_binary_with_or_without_spaces() {
    assert_eq!(
        render_run_value(Path::new(r"C:\Users\mio\yaku.exe")),
        r#""C:\Users\mio\yaku.exe" run"#
    );
    assert_eq!(
        render_run_value(Path::new(r"C:\Program Files\yaku\yaku.exe")),
        r#""C:\Program Files\yaku\yaku.exe" run"#
    );
}

#[cfg(target_os = "linux")]
mod systemd_analyze {
    //! The rendered unit as systemd itself reads it.

    use std::path::{Path, PathBuf};
    use std::process::Command;

    use yaku::service::render_systemd_unit;

    /// `systemd-analyze verify --user` on `unit`; `Err` with its output when systemd refused
    /// the unit or warned about any line (warnings alone keep the exit status 0).
    fn verify(unit: &str) -> Result<(), String> {
        let analyze = find_program("systemd-analyze").unwrap_or_else(|| {
            panic!(
                "systemd-analyze is not installed; it checks the rendered unit: \
                 apt-get install systemd"
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("yaku.service");
        std::fs::write(&path, unit).unwrap();
        // --user needs a runtime dir; --man=no because yaku(1) is not installed here.
        let runtime = dir.path().join("runtime");
        std::fs::create_dir(&runtime).unwrap();
        let out = Command::new(analyze)
            .args(["verify", "--user", "--man=no"])
            .arg(&path)
            .env("XDG_RUNTIME_DIR", &runtime)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && said.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("{} ({})", said.trim(), out.status))
        }
    }

    fn find_program(name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .chain(["/usr/bin".into(), "/bin".into()])
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    }

    /// A real executable (verify checks ExecStart's) at a path with spaces.
    fn binary_with_spaces(dir: &Path) -> PathBuf {
        let apps = dir.join("My Games/yaku tools");
        std::fs::create_dir_all(&apps).unwrap();
        let link = apps.join("yaku");
        std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &link).unwrap();
        link
    }

    #[test]
    fn rendered_unit_passes_systemd_analyze_verify() {
        let dir = tempfile::tempdir().unwrap();
        let unit = render_systemd_unit(&binary_with_spaces(dir.path()));
        verify(&unit).unwrap();
    }

    #[test]
    fn systemd_analyze_verify_catches_a_bad_value_and_a_missing_binary() {
        let dir = tempfile::tempdir().unwrap();
        let unit = render_systemd_unit(&binary_with_spaces(dir.path()));
        // A bad value is only a warning to systemd: the check must still see it.
        let bad_value = unit.replace("RestartSec=5", "RestartSec=soon");
        assert!(verify(&bad_value).is_err(), "a bad RestartSec= passed");
        let missing = render_systemd_unit(&dir.path().join("nowhere/yaku"));
        let err = verify(&missing).unwrap_err();
        assert!(err.contains("nowhere"), "{err}");
    }
}

#[cfg(target_os = "linux")]
mod linux {
    //! install / status / uninstall against a temporary home and a fake systemctl.

    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use yaku::service::{
        self, Location, ServiceEnv, ServiceError, ServiceKind, render_autostart_desktop,
        render_systemd_unit,
    };

    /// What the fake systemctl does when called.
    enum Manager {
        /// Every `--user` call fails as it does without a session bus.
        Unreachable,
        /// Every call succeeds; `is-active` and `is-enabled` answer yes.
        Reachable,
        /// Like `Reachable`, but `enable` fails.
        EnableFails,
        /// Never answers.
        Hangs,
    }

    struct Sandbox {
        dir: tempfile::TempDir,
        env: ServiceEnv,
        log: PathBuf,
    }

    impl Sandbox {
        fn new(manager: Manager) -> Sandbox {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            let apps = root.join("My Apps");
            std::fs::create_dir_all(&apps).unwrap();
            let binary = apps.join("yaku");
            std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &binary).unwrap();
            let env = ServiceEnv {
                home: root.join("home"),
                xdg_config_home: Some(root.join("config")),
                binary,
                log_dir: root.join("logs"),
                config: None,
                systemctl: root.join("fake-systemctl"),
                launchctl: root.join("no-launchctl"),
                reg: root.join("no-reg"),
                probe_timeout: Duration::from_secs(5),
                command_timeout: Duration::from_secs(5),
            };
            let log = root.join("systemctl.log");
            let sandbox = Sandbox { dir, env, log };
            sandbox.set_manager(manager);
            sandbox
        }

        /// (Re)writes the fake systemctl: it logs its arguments, then acts as `manager`.
        fn set_manager(&self, manager: Manager) {
            let body = match manager {
                Manager::Unreachable => {
                    "echo 'Failed to connect to bus: No medium found' >&2\nexit 1\n".to_owned()
                }
                Manager::Reachable => ANSWERS.to_owned(),
                Manager::EnableFails => format!(
                    "case \"$*\" in *enable*) echo 'Failed to enable unit: boom' >&2; exit 1;; esac\n{ANSWERS}"
                ),
                Manager::Hangs => "exec sleep 30\n".to_owned(),
            };
            let script = format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n{body}",
                self.log.display()
            );
            std::fs::write(&self.env.systemctl, script).unwrap();
            let mode = std::fs::Permissions::from_mode(0o755);
            std::fs::set_permissions(&self.env.systemctl, mode).unwrap();
        }

        /// The argument lists systemctl was called with, in order.
        fn calls(&self) -> Vec<String> {
            std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect()
        }

        fn unit_dir(&self) -> PathBuf {
            self.dir.path().join("config/systemd/user")
        }

        fn autostart_dir(&self) -> PathBuf {
            self.dir.path().join("config/autostart")
        }
    }

    /// The reachable manager's answers to the queries yaku makes.
    const ANSWERS: &str = "case \"$*\" in
  '--user is-active yaku.service'|'--user is-active graphical-session.target') echo active;;
  '--user is-enabled yaku.service') echo enabled;;
esac
exit 0
";

    /// Each of `expected` was called, in this order (other calls may come between).
    fn assert_called_in_order(calls: &[String], expected: &[&str]) {
        let mut from = 0;
        for want in expected {
            match calls[from..].iter().position(|c| c == want) {
                Some(i) => from += i + 1,
                None => panic!("`{want}` was not called in order; calls: {calls:#?}"),
            }
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    #[test]
    fn without_a_user_manager_install_writes_an_autostart_entry_and_says_so() {
        let sb = Sandbox::new(Manager::Unreachable);
        let report = service::install(&sb.env).unwrap();

        let entry = sb.autostart_dir().join("yaku.desktop");
        assert_eq!(report.kind, ServiceKind::AutostartEntry);
        assert_eq!(report.location, Location::File(entry.clone()));
        assert_eq!(read(&entry), render_autostart_desktop(&sb.env.binary));
        assert!(!sb.unit_dir().join("yaku.service").exists());
        assert!(!report.started && !report.replaced && report.commands.is_empty());
        let text = report.render();
        assert!(text.contains("XDG autostart entry"), "{text}");
        assert!(text.contains(&entry.display().to_string()), "{text}");
        assert!(
            text.contains("no systemd user manager is reachable"),
            "{text}"
        );
        // Only the probe was made: nothing was enabled.
        assert_eq!(sb.calls(), ["--user show-environment"]);
    }

    #[test]
    fn status_of_an_autostart_install_says_installed_and_pointing_at_this_binary() {
        let sb = Sandbox::new(Manager::Unreachable);
        service::install(&sb.env).unwrap();
        let status = service::status(&sb.env).unwrap();

        assert!(status.installed());
        let [entry] = &status.entries[..] else {
            panic!("one entry expected: {status:#?}");
        };
        assert_eq!(entry.kind, ServiceKind::AutostartEntry);
        assert_eq!(entry.target.as_deref(), Some(sb.env.binary.as_path()));
        assert!(entry.points_here);
        assert_eq!(entry.enabled, Some(true));
        assert_eq!(entry.running, None);
        let json = status.to_json();
        assert_eq!(json["installed"], true);
        assert_eq!(json["entries"][0]["kind"], "autostart-entry");
        assert_eq!(json["entries"][0]["points_here"], true);
        assert_eq!(json["entries"][0]["running"], serde_json::Value::Null);
        assert!(
            status.render().contains("(this binary)"),
            "{}",
            status.render()
        );
    }

    #[test]
    fn uninstall_removes_the_autostart_entry_and_leaves_its_neighbours() {
        let sb = Sandbox::new(Manager::Unreachable);
        service::install(&sb.env).unwrap();
        let neighbour = sb.autostart_dir().join("other.desktop");
        std::fs::write(&neighbour, "[Desktop Entry]\nExec=other\n").unwrap();

        let report = service::uninstall(&sb.env).unwrap();

        let entry = sb.autostart_dir().join("yaku.desktop");
        assert_eq!(
            report.removed,
            [(ServiceKind::AutostartEntry, Location::File(entry.clone()))]
        );
        assert!(!entry.exists());
        assert_eq!(read(&neighbour), "[Desktop Entry]\nExec=other\n");
        assert!(!service::status(&sb.env).unwrap().installed());
    }

    #[test]
    fn uninstall_with_nothing_installed_is_not_an_error() {
        let sb = Sandbox::new(Manager::Reachable);
        let report = service::uninstall(&sb.env).unwrap();
        assert!(report.nothing_removed());
        assert!(
            report.render().contains("nothing to remove"),
            "{}",
            report.render()
        );
        // Nothing installed: systemd was not even asked.
        assert!(sb.calls().is_empty(), "{:?}", sb.calls());
    }

    #[test]
    fn status_with_nothing_installed_says_not_installed() {
        let sb = Sandbox::new(Manager::Reachable);
        let status = service::status(&sb.env).unwrap();
        assert!(!status.installed());
        assert_eq!(status.to_json()["installed"], false);
        assert_eq!(status.to_json()["entries"], serde_json::json!([]));
        assert!(
            status.render().contains("not installed"),
            "{}",
            status.render()
        );
    }

    #[test]
    fn with_a_user_manager_install_writes_the_unit_then_reloads_and_enables_it() {
        let sb = Sandbox::new(Manager::Reachable);
        let report = service::install(&sb.env).unwrap();

        let unit = sb.unit_dir().join("yaku.service");
        assert_eq!(report.kind, ServiceKind::SystemdUnit);
        assert_eq!(report.location, Location::File(unit.clone()));
        assert_eq!(read(&unit), render_systemd_unit(&sb.env.binary));
        assert!(report.started && !report.replaced);
        assert_called_in_order(
            &sb.calls(),
            &["--user daemon-reload", "--user enable --now yaku.service"],
        );
        assert!(
            !sb.calls().iter().any(|c| c.contains("restart")),
            "{:?}",
            sb.calls()
        );
        let systemctl = sb.env.systemctl.display();
        assert_eq!(
            report.commands,
            [
                format!("{systemctl} --user daemon-reload"),
                format!("{systemctl} --user enable --now yaku.service"),
            ]
        );
        assert!(!sb.autostart_dir().join("yaku.desktop").exists());
        assert!(
            report.render().contains("systemd user unit"),
            "{}",
            report.render()
        );
    }

    #[test]
    fn second_install_rewrites_a_unit_that_ran_an_old_binary_and_restarts_it() {
        let sb = Sandbox::new(Manager::Reachable);
        let unit = sb.unit_dir().join("yaku.service");
        let old = Path::new("/opt/old place/yaku");
        std::fs::create_dir_all(sb.unit_dir()).unwrap();
        std::fs::write(&unit, render_systemd_unit(old)).unwrap();

        let before = service::status(&sb.env).unwrap();
        assert_eq!(before.entries[0].target.as_deref(), Some(old));
        assert!(!before.entries[0].points_here);
        assert!(
            before.render().contains("not this binary"),
            "{}",
            before.render()
        );

        let report = service::install(&sb.env).unwrap();

        assert!(report.replaced);
        assert_eq!(report.previous_binary.as_deref(), Some(old));
        assert_eq!(read(&unit), render_systemd_unit(&sb.env.binary));
        assert_called_in_order(
            &sb.calls(),
            &[
                "--user daemon-reload",
                "--user try-restart yaku.service",
                "--user enable --now yaku.service",
            ],
        );
        let after = service::status(&sb.env).unwrap();
        let entry = &after.entries[0];
        assert_eq!(entry.kind, ServiceKind::SystemdUnit);
        assert!(entry.points_here);
        assert_eq!((entry.enabled, entry.running), (Some(true), Some(true)));
    }

    #[test]
    fn with_a_user_manager_install_replaces_an_earlier_autostart_entry() {
        let sb = Sandbox::new(Manager::Unreachable);
        service::install(&sb.env).unwrap();
        let entry = sb.autostart_dir().join("yaku.desktop");
        assert!(entry.exists());

        sb.set_manager(Manager::Reachable);
        let report = service::install(&sb.env).unwrap();

        assert_eq!(report.kind, ServiceKind::SystemdUnit);
        assert_eq!(report.removed, [Location::File(entry.clone())]);
        assert!(!entry.exists());
        let status = service::status(&sb.env).unwrap();
        assert_eq!(status.entries.len(), 1, "{status:#?}");
    }

    #[test]
    fn uninstall_with_a_user_manager_disables_and_removes_only_the_unit() {
        let sb = Sandbox::new(Manager::Reachable);
        service::install(&sb.env).unwrap();
        let neighbour = sb.unit_dir().join("other.service");
        std::fs::write(&neighbour, "[Service]\nExecStart=/bin/true\n").unwrap();
        let calls_before = sb.calls().len();

        let report = service::uninstall(&sb.env).unwrap();

        let unit = sb.unit_dir().join("yaku.service");
        assert_eq!(
            report.removed,
            [(ServiceKind::SystemdUnit, Location::File(unit.clone()))]
        );
        assert!(!unit.exists());
        assert!(neighbour.exists());
        assert_called_in_order(
            &sb.calls()[calls_before..],
            &["--user disable --now yaku.service", "--user daemon-reload"],
        );
        assert!(report.notes.is_empty(), "{:?}", report.notes);
    }

    #[test]
    fn uninstall_without_a_user_manager_still_removes_the_unit_and_its_enable_link() {
        let sb = Sandbox::new(Manager::Unreachable);
        let unit = sb.unit_dir().join("yaku.service");
        let wants = sb.unit_dir().join("graphical-session.target.wants");
        std::fs::create_dir_all(&wants).unwrap();
        std::fs::write(&unit, render_systemd_unit(&sb.env.binary)).unwrap();
        std::os::unix::fs::symlink(&unit, wants.join("yaku.service")).unwrap();

        let report = service::uninstall(&sb.env).unwrap();

        assert!(!unit.exists());
        assert!(wants.join("yaku.service").symlink_metadata().is_err());
        assert_eq!(report.removed.len(), 2, "{report:#?}");
        assert!(
            report.render().contains("was not stopped"),
            "{}",
            report.render()
        );
        assert!(
            !sb.calls().iter().any(|c| c.contains("disable")),
            "{:?}",
            sb.calls()
        );
    }

    #[test]
    fn a_failing_systemctl_enable_is_an_error_naming_the_command_and_its_message() {
        let sb = Sandbox::new(Manager::EnableFails);
        let err = service::install(&sb.env).unwrap_err();
        assert!(matches!(err, ServiceError::CommandFailed { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("--user enable --now yaku.service"), "{text}");
        assert!(text.contains("boom"), "{text}");
    }

    #[test]
    fn a_systemctl_that_never_answers_counts_as_no_user_manager() {
        let mut sb = Sandbox::new(Manager::Hangs);
        sb.env.probe_timeout = Duration::from_millis(300);
        let started = Instant::now();
        let report = service::install(&sb.env).unwrap();
        assert_eq!(report.kind, ServiceKind::AutostartEntry);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_binary_path_systemd_refuses_gets_an_autostart_entry_instead() {
        let mut sb = Sandbox::new(Manager::Reachable);
        sb.env.binary = sb.dir.path().join("it's here/yaku");
        let report = service::install(&sb.env).unwrap();
        assert_eq!(report.kind, ServiceKind::AutostartEntry);
        assert!(
            report.render().contains("systemd cannot run"),
            "{}",
            report.render()
        );
        assert!(!sb.unit_dir().join("yaku.service").exists());
        let status = service::status(&sb.env).unwrap();
        assert!(status.entries[0].points_here, "{status:#?}");
    }

    #[test]
    fn install_with_a_config_runs_the_service_with_that_config_in_the_unit_and_the_autostart_entry()
    {
        for manager in [Manager::Reachable, Manager::Unreachable] {
            let mut sb = Sandbox::new(manager);
            let config = sb.dir.path().join("My Configs/yaku.toml");
            sb.env.config = Some(config.clone());
            let report = service::install(&sb.env).unwrap();
            let (file, key) = match report.kind {
                ServiceKind::SystemdUnit => (sb.unit_dir().join("yaku.service"), "ExecStart="),
                _ => (sb.autostart_dir().join("yaku.desktop"), "Exec="),
            };
            let text = read(&file);
            let exec = text.lines().find(|l| l.starts_with(key)).unwrap();
            assert!(
                exec.ends_with(&format!(" run --config \"{}\"", config.display())),
                "{exec}"
            );
            let status = service::status(&sb.env).unwrap();
            assert!(status.entries[0].points_here, "{status:#?}");
        }
    }

    /// `yaku --config CONFIG service ARGS` from `cwd`, with no user manager (a systemctl that
    /// fails comes first on PATH) and the XDG dirs under `root`.
    fn yaku_service(root: &Path, cwd: &Path, config: &str, args: &[&str]) -> String {
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let fake = bin.join("systemctl");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'Failed to connect to bus' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let run = root.join("run");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_yaku"))
            .arg("--config")
            .arg(config)
            .arg("service")
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("HOME", root.join("home"))
            .env("XDG_CONFIG_HOME", root.join("config"))
            .env("XDG_STATE_HOME", root.join("state"))
            .env("XDG_DATA_HOME", root.join("data"))
            .env("XDG_RUNTIME_DIR", &run)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert!(
            out.status.success(),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    #[test]
    fn service_install_carries_a_relative_config_as_an_absolute_path_and_status_asks_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let work = root.join("work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join("my.toml"), "").unwrap();
        yaku_service(root, &work, "my.toml", &["install"]);
        let entry = read(&root.join("config/autostart/yaku.desktop"));
        let absolute = work.join("my.toml");
        assert!(
            entry.contains(&format!(" run --config {}\n", absolute.display())),
            "{entry}"
        );
        // No manager can tell whether it runs; the control socket says it does not.
        let out = yaku_service(root, &work, "my.toml", &["status"]);
        assert!(out.contains("running: no"), "{out}");
    }

    #[test]
    fn install_refuses_a_relative_binary_path() {
        let mut sb = Sandbox::new(Manager::Reachable);
        sb.env.binary = PathBuf::from("target/debug/yaku");
        let err = service::install(&sb.env).unwrap_err();
        assert!(matches!(err, ServiceError::RelativeBinary(_)), "{err:?}");
        assert!(sb.calls().is_empty());
    }

    #[test]
    fn config_dir_is_xdg_config_home_when_set_else_home_dot_config() {
        let sb = Sandbox::new(Manager::Reachable);
        let root = sb.dir.path();
        assert_eq!(
            sb.env.systemd_unit_path(),
            root.join("config/systemd/user/yaku.service")
        );
        let env = ServiceEnv {
            xdg_config_home: None,
            ..sb.env.clone()
        };
        assert_eq!(
            env.autostart_path(),
            root.join("home/.config/autostart/yaku.desktop")
        );
    }

    #[test]
    fn status_counts_a_symlink_to_this_binary_as_this_binary() {
        let sb = Sandbox::new(Manager::Reachable);
        let other_link = sb.dir.path().join("elsewhere-yaku");
        std::os::unix::fs::symlink(&sb.env.binary, &other_link).unwrap();
        std::fs::create_dir_all(sb.unit_dir()).unwrap();
        std::fs::write(
            sb.unit_dir().join("yaku.service"),
            render_systemd_unit(&other_link),
        )
        .unwrap();
        let status = service::status(&sb.env).unwrap();
        assert!(status.entries[0].points_here, "{status:#?}");
    }
}

//! `yakuw.exe`: the daemon with no console window, beside `yaku.exe` as pythonw.exe sits
//! beside python.exe. The login entry (`yaku service install`) starts it, so no console opens
//! at sign-in and none can be closed by accident.

// A GUI-subsystem program: Windows gives it no console.
#![cfg_attr(windows, windows_subsystem = "windows")]

#[cfg(windows)]
fn main() -> std::process::ExitCode {
    yaku::cli::windowless::main()
}

/// Elsewhere a terminal is no burden: `yaku run` is the program.
#[cfg(not(windows))]
fn main() -> std::process::ExitCode {
    eprintln!("yakuw is the Windows program that runs yaku without a console; use `yaku run`");
    std::process::ExitCode::from(2)
}

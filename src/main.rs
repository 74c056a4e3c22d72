//! `yaku`: parse the arguments, run, and turn the result into an exit code.

fn main() -> std::process::ExitCode {
    yaku::cli::main()
}

//! Fuzz target: see `yaku_fuzz::check_parse_options`. With the `libfuzzer` feature (the default, for
//! `cargo fuzz`) it is a libFuzzer target; without it, a binary replaying the files named on
//! its command line (directories included).
#![cfg_attr(feature = "libfuzzer", no_main)]

#[cfg(feature = "libfuzzer")]
libfuzzer_sys::fuzz_target!(|data: &[u8]| yaku_fuzz::check_parse_options(data));

#[cfg(not(feature = "libfuzzer"))]
fn main() {
    yaku_fuzz::replay(yaku_fuzz::check_parse_options, std::env::args().skip(1));
}

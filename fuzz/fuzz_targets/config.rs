//! Config text through `Config::parse` (TOML, then validation), and the summary that
//! `check-config` prints from a valid one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenreview_proxy::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.toml") {
        Ok(config) => {
            assert!(!config.issuers.is_empty());
            let _ = config.summary();
            let _ = config.files();
        }
        Err(e) => assert!(!e.key.is_empty()),
    }
});

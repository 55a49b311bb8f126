//! The agent's TOML config, parsed and resolved (as `--config` with `--simulate`): never a panic,
//! and every error can be shown with its place.
#![no_main]
use std::path::{Path, PathBuf};

use edgesense_agent::{config, spec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let loaded = match config::parse(Path::new("fuzz.toml"), text.to_owned()) {
        Ok(l) => l,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let flags = spec::Overrides {
        simulate: true,
        // Keep `sensors = "auto"` away from the machine's real /sys.
        sysfs_root: Some(PathBuf::from("/nonexistent-edgesense-fuzz")),
        ..Default::default()
    };
    match spec::resolve(&loaded, &flags) {
        Ok(n) => assert!(n.sensors.iter().all(|s| !s.name.is_empty())),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

//! Images as `flash` reads them after writing: the MBR, the FAT boot partition, the files on
//! it and the first-boot detection. Never a panic on a corrupt or hostile image.
#![no_main]
use std::io::Write;

use edgesense_provision::{boot, setup};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = boot::find_boot_in(&mut std::io::Cursor::new(data));
    let Ok(mut f) = tempfile() else { return };
    if f.write_all(data).is_err() {
        return;
    }
    let Ok(b) = boot::Boot::open(&mut f) else { return };
    let _ = b.read("config.txt");
    let _ = b.read("cmdline.txt");
    let _ = setup::detect(&b);
    let _ = b.label();
});

fn tempfile() -> std::io::Result<std::fs::File> {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("edgesense-fuzz-{}.img", std::process::id()));
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    let _ = std::fs::remove_file(&path);
    Ok(f)
}

//! The buses a driver talks through, one trait per kind of hardware access, each with its real
//! implementation and a fake beside it.
//!
//! | trait | real | fake |
//! |---|---|---|
//! | [`sysfs::SysfsBus`] | [`sysfs::Sysfs`] (files under a root, `/` on a Pi) | [`sysfs::FakeSysfs`] (in memory; timing, flaky reads, 1-Wire conversions) |
//! | [`i2c::I2cBus`] | [`i2c::RppalI2c`] (`/dev/i2c-N`, rppal) | [`i2c::FakeBme280`] (emulated register map) |
//! | [`gpio::GpioBus`] | [`gpio::RppalGpio`] (`/dev/gpiomem`, rppal) | [`gpio::MockGpio`] (records every write with a timestamp) |
//!
//! Drivers own no I/O: they take a bus and are tested against the fake, so the code above the bus
//! is the code that runs on a Pi.

pub mod gpio;
pub mod i2c;
pub mod sysfs;

/// The device nodes under `dev_root` (`/dev` on a Pi) that the buses open, with their group id:
/// what an agent container must be given (`--device`, `--group-add`) and nothing more.
///
/// - `gpiomem`: the BCM283x/BCM2711 GPIO block for non-root users (Raspberry Pi OS driver;
///   rppal's first choice on a Pi 1–4).
/// - `gpiomem0`…: the Pi 5's RP1 (one per GPIO bank; rppal opens `gpiomem0`, bank 0 holds the
///   header pins).
/// - `gpiochip*`: the character devices (interrupts on input pins, and the Pi 5's fallback).
/// - `i2c-*`: the I2C buses (`i2c-1` on the header with `dtparam=i2c_arm=on`).
///
/// `/dev/mem` is left out on purpose: rppal falls back to it only as root, which the container
/// is not.
pub fn device_nodes(dev_root: &std::path::Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dev_root) else {
        return Vec::new();
    };
    let numbered = |n: &str, prefix: &str| {
        n.strip_prefix(prefix)
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
    };
    let mut found: Vec<(String, u32)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let wanted = numbered(&name, "gpiomem")
                || (numbered(&name, "gpiochip") && name.len() > "gpiochip".len())
                || (numbered(&name, "i2c-") && name.len() > "i2c-".len());
            wanted.then_some(())?;
            // Follows symlinks (udev's /dev/gpiochip4 -> gpiochip0 on some Pi 5 images).
            let gid = std::fs::metadata(e.path()).ok()?.gid();
            Some((name, gid))
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::device_nodes;

    fn dev(names: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for n in names {
            std::fs::write(d.path().join(n), "").unwrap();
        }
        d
    }

    fn names(d: &tempfile::TempDir) -> Vec<String> {
        device_nodes(d.path()).into_iter().map(|(n, _)| n).collect()
    }

    /// /dev as each Pi generation's kernel lays it out (Raspberry Pi OS bookworm), plus the
    /// devices that must not be passed.
    #[test]
    fn every_pi_generation_gets_its_gpio_and_i2c_devices() {
        // Pi 1 / Zero / 2 / 3 / 4: one gpiomem, one gpiochip (gpiochip0), I2C buses.
        let pi4 = dev(&[
            "gpiomem",
            "gpiochip0",
            "gpiochip1",
            "i2c-1",
            "i2c-20",
            "mem",
            "tty0",
        ]);
        assert_eq!(
            names(&pi4),
            ["gpiochip0", "gpiochip1", "gpiomem", "i2c-1", "i2c-20"]
        );
        // Pi 5: RP1's gpiomem0..4 instead of gpiomem, gpiochip0..4 (and 10, 11, 12, 13).
        let pi5 = dev(&[
            "gpiomem0",
            "gpiomem1",
            "gpiomem2",
            "gpiomem3",
            "gpiomem4",
            "gpiochip0",
            "gpiochip4",
            "gpiochip10",
            "i2c-1",
            "mem",
            "vcio",
        ]);
        assert_eq!(
            names(&pi5),
            [
                "gpiochip0",
                "gpiochip10",
                "gpiochip4",
                "gpiomem0",
                "gpiomem1",
                "gpiomem2",
                "gpiomem3",
                "gpiomem4",
                "i2c-1"
            ]
        );
        // A laptop: nothing (not gpiomem-like names either).
        let pc = dev(&["mem", "tty0", "gpiomemx", "i2c-", "gpiochip", "i2c-dev"]);
        assert!(names(&pc).is_empty(), "{:?}", names(&pc));
        // No /dev at all.
        assert!(device_nodes(std::path::Path::new("/nonexistent")).is_empty());
    }
}

//! Edits of the firmware's text files, idempotent and keeping what is there.
//!
//! `config.txt` (Raspberry Pi documentation, "config.txt"): the lines edgesense needs go in one
//! marked block at the end, under `[all]` (so an earlier `[pi4]`-style filter cannot swallow
//! them); running `flash` again rewrites that block, never appends a second one, and a line the
//! user already has outside it is not repeated.
//!
//! `cmdline.txt`: one line of kernel parameters; parameters are added once.

const BEGIN: &str =
    "# --- edgesense: added by `edgesense flash`; edits inside are replaced on the next flash ---";
const END: &str = "# --- end edgesense ---";

/// The overlays and parameters for the sensors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlays {
    /// 1-Wire data pin for DS18B20s (BCM number; the overlay's default is 4).
    pub w1_gpio_pin: u8,
    /// The I2C bus on GPIO2/3 (`dtparam=i2c_arm=on`), for a BME280.
    pub i2c: bool,
    /// `dtoverlay=i2c-sensor,bme280`: the kernel driver reads the BME280 (IIO).
    pub bme280_kernel: bool,
    /// `dtoverlay=dht11,gpiopin=N`: a DHT22 on pin N.
    pub dht_pin: Option<u8>,
}

impl Default for Overlays {
    fn default() -> Self {
        Overlays {
            w1_gpio_pin: 4,
            i2c: true,
            bme280_kernel: false,
            dht_pin: None,
        }
    }
}

impl Overlays {
    /// The `config.txt` lines, in order.
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![format!("dtoverlay=w1-gpio,gpiopin={}", self.w1_gpio_pin)];
        if self.i2c {
            v.push("dtparam=i2c_arm=on".into());
        }
        if self.bme280_kernel {
            v.push("dtoverlay=i2c-sensor,bme280".into());
        }
        if let Some(p) = self.dht_pin {
            v.push(format!("dtoverlay=dht11,gpiopin={p}"));
        }
        v
    }
}

/// `text` (a config.txt) with the edgesense block set to `lines`.
pub fn config_txt(text: &str, lines: &[String]) -> String {
    // Drop an earlier block.
    let mut kept: Vec<&str> = Vec::new();
    let mut inside = false;
    for l in text.lines() {
        if l.trim() == BEGIN {
            inside = true;
            continue;
        }
        if inside {
            if l.trim() == END {
                inside = false;
            }
            continue;
        }
        kept.push(l);
    }
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    let have: Vec<&str> = kept.iter().map(|l| l.trim()).collect();
    let new: Vec<&String> = lines
        .iter()
        .filter(|l| !have.contains(&l.as_str()))
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    if !new.is_empty() {
        out.push('\n');
        out.push_str(BEGIN);
        out.push_str("\n[all]\n");
        for l in new {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str(END);
        out.push('\n');
    }
    out
}

/// `line` (a cmdline.txt) with each of `params` added unless a parameter of that name is there.
pub fn cmdline(line: &str, params: &[&str]) -> String {
    let mut words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    for p in params {
        let name = p.split('=').next().unwrap_or(p);
        if !words.iter().any(|w| w.split('=').next() == Some(name)) {
            words.push((*p).to_owned());
        }
    }
    words.join(" ") + "\n"
}

/// `line` without the parameters named in `names`.
pub fn cmdline_without(line: &str, names: &[&str]) -> String {
    let words: Vec<&str> = line
        .split_whitespace()
        .filter(|w| !names.contains(&w.split('=').next().unwrap_or(w)))
        .collect();
    words.join(" ") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOCK: &str = "# For more options and information see\n# http://rptl.io/configtxt\ndtparam=audio=on\n\n[cm4]\notg_mode=1\n\n[all]\narm_64bit=1\n";

    #[test]
    fn config_block_is_idempotent_and_keeps_existing_lines() {
        let o = Overlays {
            dht_pin: Some(17),
            ..Overlays::default()
        };
        let once = config_txt(STOCK, &o.lines());
        assert!(
            once.starts_with(STOCK.trim_end()),
            "stock lines kept in place:\n{once}"
        );
        assert!(once.contains("[all]\ndtoverlay=w1-gpio,gpiopin=4\ndtparam=i2c_arm=on\ndtoverlay=dht11,gpiopin=17\n"), "{once}");
        let twice = config_txt(&once, &o.lines());
        assert_eq!(once, twice, "running it again adds nothing");
        let changed = config_txt(&once, &Overlays::default().lines());
        assert!(
            !changed.contains("dht11"),
            "the block is replaced: {changed}"
        );
        assert_eq!(changed.matches(BEGIN).count(), 1);
    }

    #[test]
    fn a_line_the_user_has_is_not_repeated() {
        let text = "dtparam=i2c_arm=on\n";
        let out = config_txt(text, &Overlays::default().lines());
        assert_eq!(out.matches("dtparam=i2c_arm=on").count(), 1, "{out}");
        assert!(out.contains("dtoverlay=w1-gpio,gpiopin=4"));
    }

    #[test]
    fn cmdline_parameters_are_added_once_and_removed_by_name() {
        let stock = "console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootfstype=ext4 fsck.repair=yes rootwait\n";
        let once = cmdline(stock, &["cgroup_enable=memory", "cgroup_memory=1"]);
        assert!(
            once.ends_with("rootwait cgroup_enable=memory cgroup_memory=1\n"),
            "{once}"
        );
        assert_eq!(
            cmdline(&once, &["cgroup_enable=memory", "cgroup_memory=1"]),
            once
        );
        assert_eq!(once.lines().count(), 1);
        let run = cmdline(&once, &["systemd.run=/boot/firstrun.sh"]);
        assert_eq!(cmdline_without(&run, &["systemd.run"]), once);
    }
}

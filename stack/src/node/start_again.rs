//! The systemd units that keep a `node run` agent container running and on its network:
//! `edgesense-agent-start-again@NAME.service` whenever docker starts (moby/moby#32607: a
//! container on an attachable overlay network can lose the race with the swarm's cleanup of its
//! old attachment, and its restart policy never retries), and
//! `edgesense-agent-check@NAME.timer` every minute (a node that left and rejoined the swarm has
//! lost the container's overlay attachment for good). Both run `start-again.sh`.

use std::path::Path;

use crate::error::{Result, StackError};

fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script: starts the named containers if dockerd recorded a start error for them.
pub const START_AGAIN_SH: &str = include_str!("../../assets/node/start-again.sh");
/// The systemd template unit (`@NAME` = container name) that runs it whenever docker starts.
pub const START_AGAIN_UNIT: &str =
    include_str!("../../assets/node/edgesense-agent-start-again@.service");
/// Where the unit expects the script (its `ExecStart`).
pub const START_AGAIN_PATH: &str = "/usr/local/lib/edgesense/start-again.sh";
const START_AGAIN_UNIT_PATH: &str = "/etc/systemd/system/edgesense-agent-start-again@.service";
/// The every-minute check: a service running the script with `--no-wait`, and its timer.
pub const CHECK_UNIT: &str = include_str!("../../assets/node/edgesense-agent-check@.service");
pub const CHECK_TIMER: &str = include_str!("../../assets/node/edgesense-agent-check@.timer");
const CHECK_UNIT_PATH: &str = "/etc/systemd/system/edgesense-agent-check@.service";
const CHECK_TIMER_PATH: &str = "/etc/systemd/system/edgesense-agent-check@.timer";

/// The unit instance for container `name`.
pub fn start_again_instance(name: &str) -> String {
    format!("edgesense-agent-start-again@{name}.service")
}

/// The timer instance for container `name`.
pub fn check_timer_instance(name: &str) -> String {
    format!("edgesense-agent-check@{name}.timer")
}

/// Shell lines (for a first-boot script running as root) that install the script and the units
/// and enable them for container `name`.
pub fn start_again_install_script(name: &str) -> String {
    let mut s = format!(
        "mkdir -p {dir}\ncat >{START_AGAIN_PATH} <<'EDGESENSE_EOF'\n{START_AGAIN_SH}EDGESENSE_EOF\nchmod 755 {START_AGAIN_PATH}\n",
        dir = START_AGAIN_PATH.rsplit_once('/').map_or("/", |(d, _)| d),
    );
    for (path, content) in [
        (START_AGAIN_UNIT_PATH, START_AGAIN_UNIT),
        (CHECK_UNIT_PATH, CHECK_UNIT),
        (CHECK_TIMER_PATH, CHECK_TIMER),
    ] {
        s.push_str(&format!(
            "cat >{path} <<'EDGESENSE_EOF'\n{content}EDGESENSE_EOF\n"
        ));
    }
    s.push_str(&format!(
        "systemctl daemon-reload\nsystemctl enable --now {unit} {timer}\n",
        unit = sh(&start_again_instance(name)),
        timer = sh(&check_timer_instance(name)),
    ));
    s
}

/// Installs the script and the unit on this host for container `name` with the same lines as the
/// first boot ([`start_again_install_script`]), run by bash as root. Does nothing (`Ok(false)`)
/// where systemd does not run (no `/run/systemd/system`, sd_booted(3)).
pub fn install_start_again(name: &str) -> Result<bool> {
    if !Path::new("/run/systemd/system").is_dir() {
        return Ok(false);
    }
    let out = std::process::Command::new("bash")
        .args(["-e", "-c", &start_again_install_script(name)])
        .output()
        .map_err(|e| StackError::Io(format!("bash: {e}")))?;
    if !out.status.success() {
        return Err(StackError::Io(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_again_unit_runs_the_installed_script_whenever_docker_starts() {
        let unit = START_AGAIN_UNIT;
        assert!(
            unit.contains(&format!("ExecStart={START_AGAIN_PATH} %i\n")),
            "{unit}"
        );
        for line in [
            "After=docker.service",
            "PartOf=docker.service",
            "WantedBy=docker.service",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line}: {unit}");
        }
        assert_eq!(
            start_again_instance("agent-a"),
            "edgesense-agent-start-again@agent-a.service"
        );
        // The timer's service checks without waiting, only while docker runs.
        assert!(
            CHECK_UNIT.contains(&format!("ExecStart={START_AGAIN_PATH} --no-wait %i\n")),
            "{CHECK_UNIT}"
        );
        assert!(CHECK_UNIT.lines().any(|l| l == "Requisite=docker.service"));
        for line in ["OnUnitActiveSec=1min", "WantedBy=timers.target"] {
            assert!(
                CHECK_TIMER.lines().any(|l| l == line),
                "{line}: {CHECK_TIMER}"
            );
        }
        assert_eq!(
            check_timer_instance("agent-a"),
            "edgesense-agent-check@agent-a.timer"
        );
    }

    #[test]
    fn first_boot_lines_write_the_shipped_files_and_enable_the_unit() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let r = root.path().display().to_string();
        // The same lines with every absolute path moved under the temp root, and systemctl
        // recorded instead of run.
        let lines = start_again_install_script("edgesense-agent")
            .replace(" /usr/local/lib/", &format!(" {r}/usr/local/lib/"))
            .replace(">/usr/local/lib/", &format!(">{r}/usr/local/lib/"))
            .replace(">/etc/systemd/", &format!(">{r}/etc/systemd/"));
        std::fs::create_dir_all(root.path().join("etc/systemd/system")).unwrap();
        let script = format!("systemctl() {{ echo \"systemctl $*\" >>{r}/log; }}\n{lines}");
        let run = std::process::Command::new("bash")
            .args(["-e", "-c", &script])
            .output()
            .unwrap();
        assert!(run.status.success(), "{script}\n{run:?}");
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(
            read("usr/local/lib/edgesense/start-again.sh"),
            START_AGAIN_SH
        );
        let installed = root.path().join("usr/local/lib/edgesense/start-again.sh");
        let mode = std::fs::metadata(installed).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            read("etc/systemd/system/edgesense-agent-start-again@.service"),
            START_AGAIN_UNIT
        );
        assert_eq!(
            read("etc/systemd/system/edgesense-agent-check@.service"),
            CHECK_UNIT
        );
        assert_eq!(
            read("etc/systemd/system/edgesense-agent-check@.timer"),
            CHECK_TIMER
        );
        assert_eq!(
            read("log"),
            "systemctl daemon-reload\nsystemctl enable --now edgesense-agent-start-again@edgesense-agent.service edgesense-agent-check@edgesense-agent.timer\n"
        );
    }
}

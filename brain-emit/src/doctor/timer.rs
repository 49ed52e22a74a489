//! The `timer` check: `systemctl is-active` on the heartbeat timer. Without systemd (a
//! container, a developer machine) it cannot be checked: a warning, not a failure.

use std::path::Path;
use std::process::Command;

use super::{Check, Status};

/// The heartbeat's timer unit (`systemd/`).
pub const TIMER_UNIT: &str = "m8trx-brain-heartbeat.timer";

/// Present when systemd is the running init system (what `sd_booted()` tests).
const SYSTEMD_RUNNING: &str = "/run/systemd/system";

/// `timer`: asks `systemctl` (the one given, else the one on `PATH` when systemd runs).
pub(super) fn check(systemctl: Option<&Path>) -> Check {
    let program = match systemctl {
        Some(p) => p,
        None if Path::new(SYSTEMD_RUNNING).is_dir() => Path::new("systemctl"),
        None => {
            return Check::new(
                "timer",
                Status::Warn,
                format!("cannot check {TIMER_UNIT} (no systemd)"),
            );
        }
    };
    let out = match Command::new(program)
        .args(["is-active", TIMER_UNIT])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::new(
                "timer",
                Status::Warn,
                format!("cannot check {TIMER_UNIT} (no systemctl)"),
            );
        }
        Err(e) => {
            return Check::new(
                "timer",
                Status::Fail,
                format!("cannot run {} is-active: {e}", program.display()),
            );
        }
    };
    let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && state == "active" {
        Check::new("timer", Status::Ok, format!("{TIMER_UNIT} is active"))
    } else {
        let state = if state.is_empty() {
            String::from_utf8_lossy(&out.stderr).trim().to_owned()
        } else {
            state
        };
        Check::new(
            "timer",
            Status::Fail,
            format!(
                "{TIMER_UNIT} is {state}: enable it with `systemctl enable --now {TIMER_UNIT}`"
            ),
        )
    }
}

//! The `drop_in` and `hooks` checks: the Claude Code managed-settings drop-in exists and
//! wires each hook event brain-emit needs to this binary, with the right subcommand.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Check, Status};

/// Where cloud-init installs the drop-in (`brain-emit/integrations/claude-code/`).
pub const DEFAULT_DROP_IN: &str = "/etc/claude-code/managed-settings.d/50-m8trx-brain.json";

/// Where cloud-init installs brain-emit, the program the drop-in names.
pub const INSTALLED_BIN: &str = "/usr/local/bin/brain-emit";

/// Each hook event brain-emit must receive, and the subcommand that takes it.
const WIRING: [(&str, &str); 6] = [
    ("PreToolUse", "tool-start"),
    ("PostToolUse", "tool-call"),
    ("PostToolUseFailure", "tool-call"),
    ("Stop", "llm-usage"),
    ("SubagentStop", "llm-usage"),
    ("SessionEnd", "llm-usage"),
];

/// `drop_in` and `hooks`.
pub(super) fn checks(path: &Path) -> Vec<Check> {
    let shown = path.display();
    let parsed = std::fs::read_to_string(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("{shown} does not exist: Claude Code will not run brain-emit's hooks")
            } else {
                format!("{shown} cannot be read: {e}")
            }
        })
        .and_then(|text| {
            serde_json::from_str::<Value>(&text).map_err(|e| format!("{shown} is not JSON: {e}"))
        });
    let settings = match parsed {
        Ok(v) => v,
        Err(why) => {
            return vec![
                Check::new("drop_in", Status::Fail, why),
                Check::new("hooks", Status::Skip, "not checked: no drop-in to read"),
            ];
        }
    };
    let exe = std::env::current_exe().ok();
    vec![
        Check::new("drop_in", Status::Ok, shown.to_string()),
        wiring(&settings, exe.as_deref(), Path::new(INSTALLED_BIN)),
    ]
}

/// The command hooks of `event` in a settings document: `(command, has its own timeout)`.
fn commands<'a>(settings: &'a Value, event: &str) -> Vec<(&'a str, bool)> {
    settings["hooks"][event]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["hooks"].as_array().into_iter().flatten())
        .filter(|h| h["type"] == "command")
        .filter_map(|h| Some((h["command"].as_str()?, h.get("timeout").is_some())))
        .collect()
}

/// A command's program and first argument (a quoted program keeps its spaces).
pub(super) fn program_and_subcommand(command: &str) -> (String, Option<&str>) {
    let command = command.trim_start();
    let (program, rest) = match command.chars().next() {
        Some(q @ ('"' | '\'')) => match command[1..].split_once(q) {
            Some((p, rest)) => (p.to_owned(), rest),
            None => (command[1..].to_owned(), ""),
        },
        _ => match command.split_once(char::is_whitespace) {
            Some((p, rest)) => (p.to_owned(), rest),
            None => (command.to_owned(), ""),
        },
    };
    (program, rest.split_whitespace().next())
}

/// How a program named by the drop-in relates to this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// The running binary (same file after resolving links).
    ThisBinary,
    /// The installed path, which exists.
    Installed,
    /// Something else.
    Other(String),
}

fn target(program: &str, exe: Option<&Path>, installed: &Path) -> Target {
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    let program_path = PathBuf::from(program);
    if let (Some(a), Some(b)) = (canon(&program_path), exe.and_then(canon))
        && a == b
    {
        return Target::ThisBinary;
    }
    if program_path == installed && installed.is_file() {
        return Target::Installed;
    }
    if program_path == installed {
        return Target::Other(format!(
            "{program} (the installed path, but it does not exist)"
        ));
    }
    Target::Other(program.to_owned())
}

/// `hooks`: every event of [`WIRING`] runs this binary (or the installed one) with its
/// subcommand; SessionEnd without a timeout of its own is a warning (1.5 s shared budget).
fn wiring(settings: &Value, exe: Option<&Path>, installed: &Path) -> Check {
    let this = exe.map_or_else(|| "unknown".to_owned(), |p| p.display().to_string());
    let mut problems = Vec::new();
    let mut targets = Vec::new();
    let mut session_end_timeout = true;
    for (event, sub) in WIRING {
        let cmds = commands(settings, event);
        let found: Vec<(Target, bool)> = cmds
            .iter()
            .filter_map(|(cmd, timeout)| {
                let (program, arg) = program_and_subcommand(cmd);
                (arg == Some(sub)).then(|| (target(&program, exe, installed), *timeout))
            })
            .collect();
        match found.iter().find(|(t, _)| !matches!(t, Target::Other(_))) {
            Some((t, timeout)) => {
                targets.push(t.clone());
                if event == "SessionEnd" && !timeout {
                    session_end_timeout = false;
                }
            }
            None => match found.first() {
                Some((Target::Other(p), _)) => problems.push(format!(
                    "{event} runs {p}, not this binary ({this}) nor {}",
                    installed.display()
                )),
                _ if cmds.is_empty() => problems.push(format!("{event} is not wired")),
                _ => problems.push(format!(
                    "{event} does not run `brain-emit {sub}` (found: {})",
                    cmds.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
                )),
            },
        }
    }
    if !problems.is_empty() {
        return Check::new("hooks", Status::Fail, problems.join("; "));
    }
    let which = if targets.iter().all(|t| *t == Target::ThisBinary) {
        format!("this binary ({this})")
    } else if targets.iter().all(|t| *t == Target::Installed) {
        format!(
            "the installed path {} (this binary is {this})",
            installed.display()
        )
    } else {
        format!(
            "this binary ({this}) and the installed path {}",
            installed.display()
        )
    };
    let events: Vec<&str> = WIRING.iter().map(|(e, _)| *e).collect();
    let detail = format!("{} wired to {which}", events.join(", "));
    if session_end_timeout {
        Check::new("hooks", Status::Ok, detail)
    } else {
        Check::new(
            "hooks",
            Status::Warn,
            format!(
                "{detail}; SessionEnd has no timeout of its own, so it shares Claude Code's \
                 1.5 s SessionEnd budget"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn drop_in(program: &str) -> Value {
        let mut hooks = serde_json::Map::new();
        for (event, sub) in WIRING {
            hooks.insert(
                event.to_owned(),
                json!([{"matcher": "*", "hooks": [
                    {"type": "command", "command": format!("{program} {sub}"), "timeout": 10}
                ]}]),
            );
        }
        json!({ "hooks": hooks })
    }

    #[test]
    fn commands_split_into_program_and_subcommand() {
        assert_eq!(
            program_and_subcommand("/usr/local/bin/brain-emit tool-call"),
            ("/usr/local/bin/brain-emit".to_owned(), Some("tool-call"))
        );
        assert_eq!(
            program_and_subcommand("\"/opt/my tools/brain-emit\"  llm-usage --x"),
            ("/opt/my tools/brain-emit".to_owned(), Some("llm-usage"))
        );
        assert_eq!(
            program_and_subcommand("brain-emit"),
            ("brain-emit".to_owned(), None)
        );
    }

    #[test]
    fn the_shipped_drop_in_is_wired_to_the_installed_path() {
        let text = include_str!("../../integrations/claude-code/50-m8trx-brain.json");
        let settings: Value = serde_json::from_str(text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        // Stand-in for the installed binary: the check needs it to exist.
        let installed = dir.path().join("brain-emit");
        std::fs::write(&installed, b"").unwrap();
        let rewired = serde_json::to_string(&settings)
            .unwrap()
            .replace(INSTALLED_BIN, installed.to_str().unwrap());
        let settings: Value = serde_json::from_str(&rewired).unwrap();
        let c = wiring(&settings, None, &installed);
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.detail.contains("the installed path"), "{c:?}");
    }

    #[test]
    fn wiring_to_this_binary_another_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("brain-emit");
        std::fs::write(&exe, b"").unwrap();
        let missing_installed = dir.path().join("not-installed");

        let ok = wiring(
            &drop_in(exe.to_str().unwrap()),
            Some(&exe),
            &missing_installed,
        );
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        assert!(ok.detail.contains("this binary"), "{ok:?}");

        let other = wiring(
            &drop_in("/opt/other/brain-emit"),
            Some(&exe),
            &missing_installed,
        );
        assert_eq!(other.status, Status::Fail);
        assert!(
            other
                .detail
                .contains("PreToolUse runs /opt/other/brain-emit, not this binary"),
            "{other:?}"
        );

        let mut partial = drop_in(exe.to_str().unwrap());
        partial["hooks"]
            .as_object_mut()
            .unwrap()
            .remove("SubagentStop");
        partial["hooks"]["Stop"][0]["hooks"][0]["command"] =
            json!(format!("{} tool-call", exe.display()));
        let c = wiring(&partial, Some(&exe), &missing_installed);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("SubagentStop is not wired"), "{c:?}");
        assert!(
            c.detail
                .contains("Stop does not run `brain-emit llm-usage`"),
            "{c:?}"
        );

        let mut no_timeout = drop_in(exe.to_str().unwrap());
        no_timeout["hooks"]["SessionEnd"][0]["hooks"][0]
            .as_object_mut()
            .unwrap()
            .remove("timeout");
        let c = wiring(&no_timeout, Some(&exe), &missing_installed);
        assert_eq!(c.status, Status::Warn, "{c:?}");
    }
}

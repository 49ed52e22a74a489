//! The Claude Code managed-settings drop-in (`brain-emit/integrations/claude-code/`) run the
//! way Claude Code runs it: the settings file is parsed, and for every hook event of the
//! recorded fixture sessions (replayed by [`crate::sessions::replay_session`], tool by tool
//! and turn by turn) the command hooks the file selects for that event are run through a shell
//! with the event's JSON on stdin, under the hook's `timeout`, and judged by Claude Code's
//! exit-code rules: 0 is success, 2 blocks the action (PreToolUse: the tool call), anything
//! else is a "hook error" in the transcript. Then the server must hold what the transcripts say.
//!
//! The file names the installed binary (`/usr/local/bin/brain-emit`, where cloud-init puts
//! it); the runner substitutes the binary under test for that path, nothing else.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Backend, EMIT_BIN, Emitter, Server};
use crate::provisioning::repo_root;
use crate::sessions::{SESSIONS, assert_store_matches, golden, replay_session};

/// The drop-in, from the repository root.
const SETTINGS: &str = "brain-emit/integrations/claude-code/50-m8trx-brain.json";
/// Where the drop-in expects brain-emit (cloud-init installs it there).
const INSTALLED_EMIT: &str = "/usr/local/bin/brain-emit";
/// Claude Code's timeout for a command hook that sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Events whose matcher is tested against `tool_name`.
const TOOL_EVENTS: [&str; 3] = ["PreToolUse", "PostToolUse", "PostToolUseFailure"];

/// One `{"type": "command", …}` entry.
#[derive(Debug, Clone)]
struct CommandHook {
    command: String,
    timeout: Duration,
    /// Whether the entry set `timeout` itself.
    explicit_timeout: bool,
}

/// One matcher group: its matcher (`None` when absent) and its hooks.
type MatcherGroup = (Option<String>, Vec<CommandHook>);

/// The `hooks` section of a settings file: event → matcher groups.
#[derive(Debug)]
struct HookSettings {
    events: BTreeMap<String, Vec<MatcherGroup>>,
}

impl HookSettings {
    /// Parses a settings file's `hooks` with Claude Code's shape (`hooks` → event →
    /// `[{matcher?, hooks: [{type, command, timeout?}]}]`), refusing anything this runner
    /// would not run faithfully: unknown keys, non-command hook types, a non-positive timeout.
    fn parse(text: &str) -> HookSettings {
        let v: Value = serde_json::from_str(text).expect("the settings file is JSON");
        let top = v.as_object().expect("settings: an object");
        assert!(
            top.keys().all(|k| k == "hooks"),
            "the drop-in should hold hooks only: {:?}",
            top.keys().collect::<Vec<_>>()
        );
        let mut events = BTreeMap::new();
        for (event, groups) in top["hooks"].as_object().expect("hooks: an object") {
            let mut parsed = Vec::new();
            for group in groups.as_array().expect("an event holds an array") {
                let group = group.as_object().expect("a matcher group is an object");
                assert!(
                    group.keys().all(|k| k == "matcher" || k == "hooks"),
                    "{event}: unknown key in {group:?}"
                );
                let matcher = group
                    .get("matcher")
                    .map(|m| m.as_str().expect("matcher: a string").to_owned());
                let hooks = group["hooks"]
                    .as_array()
                    .expect("hooks: an array")
                    .iter()
                    .map(|h| {
                        let h = h.as_object().expect("a hook is an object");
                        assert!(
                            h.keys()
                                .all(|k| ["type", "command", "timeout"].contains(&k.as_str())),
                            "{event}: unknown key in {h:?}"
                        );
                        assert_eq!(h["type"], "command", "{event}: only command hooks");
                        let timeout = h.get("timeout").map(|t| {
                            let s = t.as_u64().expect("timeout: whole seconds");
                            assert!(s > 0, "{event}: timeout must be positive");
                            Duration::from_secs(s)
                        });
                        CommandHook {
                            command: h["command"].as_str().expect("command").to_owned(),
                            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
                            explicit_timeout: timeout.is_some(),
                        }
                    })
                    .collect();
                parsed.push((matcher, hooks));
            }
            events.insert(event.clone(), parsed);
        }
        HookSettings { events }
    }

    /// The command hooks Claude Code runs for `payload` (by its `hook_event_name`): those of
    /// every matcher group that matches. For tool events the matcher is tested against
    /// `tool_name` (absent, `""` and `*` match all; `A|B` matches either name); other events
    /// must not set one (this runner does not model their matchers).
    fn select(&self, payload: &Value) -> Vec<&CommandHook> {
        let event = payload["hook_event_name"]
            .as_str()
            .expect("hook_event_name");
        let Some(groups) = self.events.get(event) else {
            return Vec::new();
        };
        groups
            .iter()
            .filter(|(matcher, _)| match matcher.as_deref() {
                None | Some("" | "*") => true,
                Some(m) => {
                    assert!(
                        TOOL_EVENTS.contains(&event),
                        "{event}: matcher {m:?} is not modelled by this runner"
                    );
                    let tool = payload["tool_name"].as_str().unwrap_or_default();
                    m.split('|').any(|alt| alt == tool)
                }
            })
            .flat_map(|(_, hooks)| hooks)
            .collect()
    }
}

/// How one hook run went.
#[derive(Debug)]
struct HookRun {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    timed_out: bool,
    elapsed: Duration,
}

impl HookRun {
    /// `Ok` when Claude Code would count the run as a clean success that shows nothing: exit 0
    /// within the timeout, with stdout closed and empty.
    fn verdict(&self) -> Result<(), String> {
        let stderr = String::from_utf8_lossy(&self.stderr);
        if self.timed_out {
            return Err(format!(
                "timed out after {:?} (Claude Code cancels the hook)",
                self.elapsed
            ));
        }
        match self.code {
            Some(0) => {}
            Some(2) => return Err(format!("exit 2: blocks the action; stderr: {stderr}")),
            Some(c) => return Err(format!("exit {c}: a hook error; stderr: {stderr}")),
            None => return Err(format!("killed by a signal; stderr: {stderr}")),
        }
        if !self.stdout.is_empty() {
            return Err(format!(
                "printed on stdout: {}",
                String::from_utf8_lossy(&self.stdout)
            ));
        }
        Ok(())
    }
}

/// Runs one command hook as Claude Code does: `bash -c <command>` in the project directory
/// with `CLAUDE_PROJECT_DIR`, the event JSON on stdin, and the hook's timeout over the whole
/// run, closing of stdout and stderr included (a detached child that kept them open would stall
/// Claude Code). The installed brain-emit path is replaced by the binary under test.
fn run_hook(emitter: &Emitter, project: &Path, hook: &CommandHook, payload: &Value) -> HookRun {
    let command = match hook.command.strip_prefix(INSTALLED_EMIT) {
        Some(rest) => format!("'{EMIT_BIN}'{rest}"),
        None => hook.command.clone(),
    };
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&command)
        .current_dir(project)
        .env("CLAUDE_PROJECT_DIR", project)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    emitter.environment(&mut cmd);
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn the hook");
    let pgid = child.id();
    let (tx, rx) = mpsc::channel();
    for (n, mut pipe) in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ]
    .into_iter()
    .enumerate()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((n, buf));
        });
    }
    drop(tx);
    {
        let mut stdin = child.stdin.take().expect("stdin");
        // A hook may exit before reading all of it: ignore EPIPE.
        let _ = stdin.write_all(&serde_json::to_vec(payload).expect("payload JSON"));
    }
    let deadline = start + hook.timeout;
    let mut outputs = [Vec::new(), Vec::new()];
    let mut closed = 0;
    let mut timed_out = false;
    while closed < 2 {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((n, buf)) => {
                outputs[n] = buf;
                closed += 1;
            }
            Err(_) => {
                timed_out = true;
                break;
            }
        }
    }
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the hook") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            timed_out = true;
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = start.elapsed();
    if timed_out {
        // Claude Code cancels the hook: the shell and what it started.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = child.wait();
    }
    let [stdout, stderr] = outputs;
    HookRun {
        code: status.and_then(|s| s.code()),
        stdout,
        stderr,
        timed_out,
        elapsed,
    }
}

fn load_settings() -> HookSettings {
    let path = repo_root().join(SETTINGS);
    HookSettings::parse(&std::fs::read_to_string(&path).expect("read the drop-in"))
}

/// The drop-in wires each of the six events to the installed brain-emit's matching
/// subcommand, for every tool, once; SessionEnd sets its own timeout (else its hooks share
/// a 1.5 s budget).
#[test]
fn drop_in_wires_each_event_once_to_brain_emit() {
    let settings = load_settings();
    let wiring = [
        ("PreToolUse", "tool-start"),
        ("PostToolUse", "tool-call"),
        ("PostToolUseFailure", "tool-call"),
        ("Stop", "llm-usage"),
        ("SubagentStop", "llm-usage"),
        ("SessionEnd", "llm-usage"),
    ];
    assert_eq!(
        settings.events.keys().collect::<Vec<_>>(),
        {
            let mut names: Vec<_> = wiring.iter().map(|(e, _)| e.to_owned()).collect();
            names.sort_unstable();
            names
        },
        "the events wired"
    );
    for (event, sub) in wiring {
        for tool in ["Bash", "mcp__github__create_issue", "Task"] {
            let payload = serde_json::json!({"hook_event_name": event, "tool_name": tool});
            let hooks = settings.select(&payload);
            assert_eq!(hooks.len(), 1, "{event} ({tool}): one hook");
            assert_eq!(
                hooks[0].command,
                format!("{INSTALLED_EMIT} {sub}"),
                "{event}"
            );
            assert!(
                hooks[0].timeout <= Duration::from_secs(60),
                "{event}: a hook that enqueues needs no more than a minute"
            );
        }
    }
    let end = settings.select(&serde_json::json!({"hook_event_name": "SessionEnd"}));
    assert!(end[0].explicit_timeout, "SessionEnd sets its own timeout");
    assert!(end[0].timeout > Duration::from_millis(1500));
}

/// The runner itself: exit 2, another non-zero exit, output on stdout and a hook past its
/// timeout (together with a child it left running) are each reported, not passed.
#[test]
fn hook_runner_reports_what_claude_code_would_not_accept() {
    let settings = HookSettings::parse(
        r#"{"hooks": {
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "cat >/dev/null; exit 2"}]}],
            "PostToolUse": [{"matcher": "Read|Bash", "hooks": [{"type": "command", "command": "exit 1"}]}],
            "Stop": [{"hooks": [{"type": "command", "command": "echo done"}]}],
            "SessionEnd": [{"hooks": [{"type": "command", "command": "sleep 30 & sleep 30", "timeout": 1}]}]
        }}"#,
    );
    let emitter = Emitter::new("agent_runner", "");
    let project = tempfile::tempdir().expect("project dir");
    let run = |payload: Value| {
        let hooks = settings.select(&payload);
        assert_eq!(hooks.len(), 1, "{payload}");
        run_hook(&emitter, project.path(), hooks[0], &payload).verdict()
    };
    let pre = run(serde_json::json!({"hook_event_name": "PreToolUse", "tool_name": "Bash"}));
    assert!(pre.unwrap_err().starts_with("exit 2: blocks"));
    assert!(
        settings
            .select(&serde_json::json!({"hook_event_name": "PreToolUse", "tool_name": "Read"}))
            .is_empty(),
        "a matcher selects by tool name"
    );
    let post = run(serde_json::json!({"hook_event_name": "PostToolUse", "tool_name": "Read"}));
    assert!(post.unwrap_err().starts_with("exit 1: a hook error"));
    let stop = run(serde_json::json!({"hook_event_name": "Stop"}));
    assert!(stop.unwrap_err().starts_with("printed on stdout: done"));
    let started = Instant::now();
    let end = run(serde_json::json!({"hook_event_name": "SessionEnd"}));
    assert!(end.unwrap_err().starts_with("timed out"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancelled on time"
    );
}

/// The acceptance test: the fixture sessions replayed through the drop-in's hooks, with the
/// server up as on a real box (hooks start background flushes), then one `flush --wait`; every
/// hook ran clean, and the server holds each session's tool calls, failures, tokens and cost
/// as the transcripts and ccusage say.
#[test]
fn drop_in_hooks_deliver_the_fixture_sessions() {
    let settings = load_settings();
    let Some(mut server) = Server::new(Backend::Sqlite) else {
        return;
    };
    let key = server.mint_key("acme");
    server.start();
    let emitter = Emitter::configured("agent_acme_employee_42", &server.url(), &key);
    let project = tempfile::tempdir().expect("project dir");
    let live = tempfile::tempdir().expect("live transcripts");

    // Per event: hooks run, and the slowest run (`fire` is `Fn`, so the tally is a RefCell).
    let runs: RefCell<BTreeMap<String, (usize, Duration)>> = RefCell::default();
    let fire = |payload: &Value| {
        let event = payload["hook_event_name"].as_str().expect("event");
        let hooks = settings.select(payload);
        assert_eq!(hooks.len(), 1, "{event}: the drop-in runs one hook");
        let run = run_hook(&emitter, project.path(), hooks[0], payload);
        if let Err(why) = run.verdict() {
            panic!("{event} hook `{}`: {why}", hooks[0].command);
        }
        let mut runs = runs.borrow_mut();
        let entry = runs.entry(event.to_owned()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(run.elapsed);
    };
    let mut expected = BTreeMap::new();
    for session in SESSIONS {
        expected.insert(session, replay_session(&fire, live.path(), session));
    }
    let runs = runs.into_inner();
    for event in [
        "PreToolUse",
        "PostToolUse",
        "PostToolUseFailure",
        "Stop",
        "SubagentStop",
        "SessionEnd",
    ] {
        assert!(
            runs.get(event).is_some_and(|(n, _)| *n > 0),
            "the fixtures never fired {event}: {runs:?}"
        );
    }

    let out = emitter.flush_wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "flush --wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_store_matches(&server.stored(), &expected);
}

/// The hook lines of the README's quickstart: each `/usr/local/bin/brain-emit <sub> <<EOF`
/// with its heredoc, as `(command, payload)`; `$PWD` in an unquoted heredoc is the repository
/// root, where the quickstart runs.
fn quickstart_hook_lines(script: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut lines = script.lines();
    while let Some(line) = lines.next() {
        let Some((command, marker)) = line.split_once(" <<") else {
            continue;
        };
        if !command.starts_with(INSTALLED_EMIT) {
            continue;
        }
        let quoted = marker.starts_with('\'');
        let end = marker.trim_matches('\'');
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != end).collect();
        let mut body = body.join("\n");
        if !quoted {
            body = body.replace("$PWD", &repo_root().display().to_string());
        }
        let payload: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("`{command}`: its heredoc is not JSON ({e}): {body}"));
        out.push((command.to_owned(), payload));
    }
    out
}

/// The README's quickstart, kept true: it installs this drop-in where Claude Code reads managed
/// settings, brain-emit where the drop-in names it, and the env file where brain-emit reads it;
/// each hook line it gives (a payload piped into `/usr/local/bin/brain-emit <sub>`) is the
/// command the drop-in selects for that payload's event; and run as Claude Code runs the
/// drop-in, against a real server, they deliver the tool call and the recorded transcript's
/// usage (as ccusage counts it) under the Claude session id as the run id.
#[test]
fn readme_quickstart_pipes_payloads_into_the_drop_ins_commands() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("read README.md");
    let section = readme
        .split("\n## Quickstart")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README has a Quickstart section");
    let script = section
        .split("```sh\n")
        .nth(1)
        .and_then(|s| s.split("\n```").next())
        .expect("the quickstart has a sh block");
    for wiring in [
        format!("install -D -m 0644 {SETTINGS} \\\n  /etc/claude-code/managed-settings.d/"),
        format!("install -m 0755 target/release/brain-emit {INSTALLED_EMIT}\n"),
        format!("/dev/stdin {}\n", brain_emit::config::DEFAULT_ENV_FILE),
        "BRAIN_URL=http://127.0.0.1:8080\\nBRAIN_API_KEY=".to_owned(),
        "\nbrain-emit flush --wait\n".to_owned(),
    ] {
        assert!(
            script.contains(&wiring),
            "the quickstart should contain {wiring:?}:\n{script}"
        );
    }

    let settings = load_settings();
    let hook_lines = quickstart_hook_lines(script);
    let subs: Vec<&str> = hook_lines
        .iter()
        .map(|(c, _)| c.trim_start_matches(INSTALLED_EMIT).trim())
        .collect();
    assert_eq!(
        subs,
        ["tool-call", "llm-usage"],
        "the quickstart's hook lines"
    );

    let Some(mut server) = Server::new(Backend::Sqlite) else {
        return;
    };
    let key = server.mint_key("acme");
    server.start();
    let emitter = Emitter::configured("agent_quickstart", &server.url(), &key);
    let project = tempfile::tempdir().expect("project dir");
    for (command, payload) in &hook_lines {
        let event = payload["hook_event_name"]
            .as_str()
            .expect("hook_event_name");
        let hooks = settings.select(payload);
        assert_eq!(
            hooks.iter().map(|h| h.command.as_str()).collect::<Vec<_>>(),
            [command.as_str()],
            "{event}: the quickstart's command is the one the drop-in runs"
        );
        let run = run_hook(&emitter, project.path(), hooks[0], payload);
        if let Err(why) = run.verdict() {
            panic!("{event} hook `{command}`: {why}");
        }
    }
    let out = emitter.flush_wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "flush --wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let events = server.stored().events;
    let run_id = hook_lines[0].1["session_id"].as_str().expect("session_id");
    assert!(
        events.iter().all(|e| e.run_id.as_deref() == Some(run_id)),
        "every event under the session's run id {run_id}: {events:?}"
    );
    let calls: Vec<&Value> = events
        .iter()
        .filter(|e| e.event_type == "tool_call")
        .map(|e| &e.payload)
        .collect();
    assert_eq!(calls.len(), 1, "{events:?}");
    assert_eq!(calls[0]["tool_name"], "Bash");
    assert_eq!(calls[0]["ok"], true);
    assert_eq!(calls[0]["duration_ms"], 12);
    let mut usage: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in events.iter().filter(|e| e.event_type == "llm_usage") {
        let u = usage
            .entry(e.payload["model"].as_str().expect("model").to_owned())
            .or_default();
        u.0 += e.payload["input_tokens"].as_u64().expect("input_tokens");
        u.1 += e.payload["output_tokens"].as_u64().expect("output_tokens");
    }
    let want: BTreeMap<String, (u64, u64)> = golden()["short"]
        .iter()
        .map(|(m, u)| (m.clone(), (u.input, u.output)))
        .collect();
    assert_eq!(
        usage, want,
        "the recorded transcript's usage, as ccusage counts it"
    );
}

//! The isolate-wrapper integration (`brain-emit/integrations/isolate/`): `brain.patch` applied
//! to a temporary copy of the example `m8trx-claude-isolate` (`patch -p1`, no fuzz), and the
//! patched wrapper run for real around a stand-in agent (`fake/agent`: writes a recorded
//! transcript where Claude Code would, fires one PostToolUse hook, then ends as told), with the
//! real `brain-emit` on `PATH` and a real server. Each way a run can end must be stored as one
//! run: one `run_id` on its start, tool call, usage and end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Backend, EMIT_BIN, Emitter, FIXTURES, Server, StoredEvent, wait_until};
use crate::provisioning::{assert_ok, repo_root, tool_available};
use crate::sessions::golden;

const WRAPPER: &str = "brain-emit/integrations/isolate/m8trx-claude-isolate";
const PATCH: &str = "brain-emit/integrations/isolate/brain.patch";

/// One way a run ends.
#[derive(Debug)]
struct Case {
    name: &'static str,
    /// The stand-in agent's mode.
    mode: &'static str,
    /// `M8TRX_RUN_TIMEOUT`, seconds.
    time_limit: u32,
    /// SIGTERM the wrapper (Paperclip cancelling the run) once the agent runs.
    cancel: bool,
    status: &'static str,
    exit_code: i64,
    /// Bounds of the reported duration, ms.
    duration_ms: (u64, u64),
    /// `PAPERCLIP_RUN_ID`; `None`: `run_isolate_<name>`, which the run's events must carry.
    /// `Some`: an id that cannot be a run id, so the wrapper makes one up for the run.
    bad_paperclip_run_id: Option<&'static str>,
    /// The agent also fires a Stop hook (`llm-usage`) and reports an error (`error`).
    stop_hook: bool,
}

const CASES: [Case; 7] = [
    Case {
        name: "exit0",
        mode: "exit0",
        time_limit: 60,
        cancel: false,
        status: "success",
        exit_code: 0,
        duration_ms: (0, 20_000),
        bad_paperclip_run_id: None,
        stop_hook: false,
    },
    Case {
        name: "exit1",
        mode: "exit1",
        time_limit: 60,
        cancel: false,
        status: "failed",
        exit_code: 1,
        duration_ms: (0, 20_000),
        bad_paperclip_run_id: None,
        stop_hook: false,
    },
    Case {
        name: "timeout",
        mode: "hang",
        time_limit: 1,
        cancel: false,
        status: "timeout",
        exit_code: 124,
        duration_ms: (1_000, 20_000),
        bad_paperclip_run_id: None,
        stop_hook: false,
    },
    Case {
        name: "sigterm",
        mode: "term",
        time_limit: 60,
        cancel: false,
        status: "failed",
        exit_code: 143,
        duration_ms: (0, 20_000),
        bad_paperclip_run_id: None,
        stop_hook: false,
    },
    Case {
        name: "cancelled",
        mode: "hang",
        time_limit: 60,
        cancel: true,
        status: "failed",
        exit_code: 143,
        duration_ms: (300, 20_000),
        bad_paperclip_run_id: None,
        stop_hook: false,
    },
    Case {
        name: "stop_hook",
        mode: "exit0",
        time_limit: 60,
        cancel: false,
        status: "success",
        exit_code: 0,
        duration_ms: (0, 20_000),
        bad_paperclip_run_id: None,
        stop_hook: true,
    },
    Case {
        name: "bad_run_id",
        mode: "exit1",
        time_limit: 60,
        cancel: false,
        status: "failed",
        exit_code: 1,
        duration_ms: (0, 20_000),
        bad_paperclip_run_id: Some("paperclip run/42 (not a run id)"),
        stop_hook: true,
    },
];

/// Applies `brain.patch` to a copy of the wrapper under `dir`, as a user applies it to theirs;
/// the patched wrapper's path.
fn patched_wrapper(dir: &Path) -> PathBuf {
    let copy = dir.join(WRAPPER);
    std::fs::create_dir_all(copy.parent().expect("parent")).expect("mkdir");
    std::fs::copy(repo_root().join(WRAPPER), &copy).expect("copy the wrapper");
    let out = Command::new("patch")
        .args(["--fuzz=0", "-p1", "-d"])
        .arg(dir)
        .arg("-i")
        .arg(repo_root().join(PATCH))
        .output()
        .expect("run patch");
    assert_ok("patch -p1 < brain.patch", &out);
    let text = std::fs::read_to_string(&copy).expect("read the patched wrapper");
    assert!(
        text.contains("brain session.start"),
        "the patch added Brain"
    );
    copy
}

/// Runs the patched wrapper around the stand-in agent for `case` on its own box.
fn run_case(
    case: &Case,
    wrapper: &Path,
    bin: &Path,
    emitter: &Emitter,
    scratch: &Path,
) -> (Output, Duration) {
    let tmp = scratch.join(format!("tmp-{}", case.name));
    std::fs::create_dir_all(&tmp).expect("mkdir TMPDIR");
    let ready = scratch.join(format!("ready-{}", case.name));
    let mut cmd = Command::new("bash");
    cmd.arg(wrapper)
        .arg(repo_root().join("e2e/tests/it/fake/agent"))
        .args([case.mode, &session_id(case)])
        .arg(Path::new(FIXTURES).join("transcripts/short.jsonl"));
    emitter.environment(&mut cmd);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var_os("PATH")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    cmd.env("PATH", path)
        .env(
            "PAPERCLIP_RUN_ID",
            case.bad_paperclip_run_id
                .map_or_else(|| run_id(case), str::to_owned),
        )
        .env("AGENT_STOP_HOOK", if case.stop_hook { "1" } else { "0" })
        .env("M8TRX_RUN_TIMEOUT", case.time_limit.to_string())
        .env("AGENT_READY", &ready)
        .env("TMPDIR", &tmp)
        .env_remove("BRAIN_RUN_ID")
        .env_remove("CLAUDE_CONFIG_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn the wrapper");
    if case.cancel {
        assert!(
            wait_until(Duration::from_secs(20), || ready.exists()),
            "the agent never started"
        );
        std::thread::sleep(Duration::from_millis(300));
        let kill = Command::new("kill")
            .args(["-s", "TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(kill.success(), "SIGTERM the wrapper");
    }
    let out = child.wait_with_output().expect("wait for the wrapper");
    let took = started.elapsed();
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .expect("read TMPDIR")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(
        left.is_empty(),
        "{}: the run dir was left: {left:?}",
        case.name
    );
    (out, took)
}

fn run_id(case: &Case) -> String {
    format!("run_isolate_{}", case.name)
}

fn agent_id(case: &Case) -> String {
    format!("agent_isolate_{}", case.name)
}

fn session_id(case: &Case) -> String {
    format!("sess_isolate_{}", case.name)
}

/// Every way a run ends, through the patched wrapper, on SQLite: see [`wrapper_runs`].
#[test]
fn patched_wrapper_reports_each_way_a_run_ends() {
    wrapper_runs(Backend::Sqlite);
}

/// [`wrapper_runs`] on Postgres.
#[test]
fn patched_wrapper_reports_each_way_a_run_ends_postgres() {
    wrapper_runs(Backend::Postgres);
}

/// Every way a run ends, through the patched wrapper: the wrapper exits as the agent did and
/// adds nothing to its stdout; in the server's database every event of a run carries the run's
/// one `run_id` (Paperclip's run id, or one the wrapper made up when Paperclip's cannot be a
/// run id), joining one `session.start`, the agent's tool call (and, when it fires them, its
/// Stop hook's usage and its error report), the usage of its transcript (swept by the EXIT
/// trap: no SessionEnd hook fired) equal to ccusage's, and one `session.end` with the status,
/// exit code and a duration that fits the run.
fn wrapper_runs(backend: Backend) {
    if !tool_available("patch", "brain.patch") || !tool_available("timeout", "the wrapper") {
        return;
    }
    let Some(mut server) = Server::new(backend) else {
        return;
    };
    let key = server.mint_key("acme");
    server.start();
    let scratch = tempfile::tempdir().expect("scratch dir");
    let wrapper = patched_wrapper(&scratch.path().join("repo"));
    let bin = scratch.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    std::os::unix::fs::symlink(EMIT_BIN, bin.join("brain-emit")).expect("brain-emit on PATH");

    let mut runs = Vec::new();
    for case in &CASES {
        let emitter = Emitter::configured(&agent_id(case), &server.url(), &key);
        let (out, took) = run_case(case, &wrapper, &bin, &emitter, scratch.path());
        assert_eq!(
            out.status.code(),
            Some(case.exit_code as i32),
            "{}: the wrapper exits as the agent did; stderr: {}",
            case.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "{}: stdout is the agent's: {}",
            case.name,
            String::from_utf8_lossy(&out.stdout)
        );
        runs.push((emitter, took));
    }
    for ((emitter, _), case) in runs.iter().zip(&CASES) {
        let out = emitter.flush_wait();
        assert_ok(&format!("{}: flush --wait", case.name), &out);
        // A hook problem (an ignored run id, say) would be recorded here.
        let status = emitter.status();
        assert!(
            status["last_hook_error"].is_null(),
            "{}: no hook problem: {status}",
            case.name
        );
    }

    // The join, as a run read makes it: per agent (one run each), ONE run id, and under it
    // the start, the tool call, the usage, the end (and the error report when there is one).
    let joined = server.runs_by_agent();
    assert_eq!(
        joined.keys().cloned().collect::<Vec<_>>(),
        {
            let mut w: Vec<String> = CASES.iter().map(agent_id).collect();
            w.sort();
            w
        },
        "every run stored"
    );
    let mut run_ids = BTreeMap::new();
    for case in &CASES {
        let runs = &joined[&agent_id(case)];
        assert_eq!(
            runs.len(),
            1,
            "{}: one run id on every event of the run: {runs:?}",
            case.name
        );
        let (run, types) = runs.iter().next().expect("one run");
        let run = run
            .clone()
            .unwrap_or_else(|| panic!("{}: events without a run id: {types:?}", case.name));
        match case.bad_paperclip_run_id {
            None => assert_eq!(run, run_id(case), "{}: Paperclip's run id", case.name),
            Some(_) => assert!(
                run.starts_with("run_") && run.len() > "run_".len(),
                "{}: a run id made up by the wrapper: {run}",
                case.name
            ),
        }
        let count = |t: &str| types.get(t).copied().unwrap_or(0);
        assert_eq!(count("session.start"), 1, "{}: {types:?}", case.name);
        assert_eq!(count("tool_call"), 1, "{}: {types:?}", case.name);
        assert!(count("llm_usage") >= 1, "{}: {types:?}", case.name);
        assert_eq!(count("session.end"), 1, "{}: {types:?}", case.name);
        assert_eq!(
            count("error"),
            i64::from(case.stop_hook),
            "{}: {types:?}",
            case.name
        );
        run_ids.insert(case.name, run);
    }

    let events = server.stored().events;
    let mut by_run: BTreeMap<&str, Vec<&StoredEvent>> = BTreeMap::new();
    for e in &events {
        let run = e.run_id.as_deref().expect("no event without a run id");
        by_run.entry(run).or_default().push(e);
    }
    assert_eq!(by_run.len(), CASES.len(), "one run id per run");
    let short = &golden()["short"];
    for ((_, took), case) in runs.iter().zip(&CASES) {
        let mine = &by_run[run_ids[case.name].as_str()];
        let of = |t: &str| -> Vec<&Value> {
            mine.iter()
                .filter(|e| e.event_type == t)
                .map(|e| &e.payload)
                .collect()
        };
        let starts = of("session.start");
        assert_eq!(starts.len(), 1, "{}: one session.start", case.name);
        assert_eq!(
            starts[0]["paperclip_run_id"],
            case.bad_paperclip_run_id
                .map_or_else(|| run_id(case), str::to_owned)
                .as_str(),
            "{}: Paperclip's run id, as given",
            case.name
        );
        assert_eq!(starts[0]["agent_kind"], "claude-code");
        assert_eq!(starts[0]["source"], "m8trx-claude-isolate");

        let calls = of("tool_call");
        assert_eq!(calls.len(), 1, "{}: the agent's tool call", case.name);
        assert_eq!(
            calls[0]["tool_use_id"],
            format!("toolu_{}", session_id(case)).as_str()
        );

        let mut usage: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
        for p in of("llm_usage") {
            let u = usage
                .entry(p["model"].as_str().expect("model").to_owned())
                .or_default();
            let n = |k: &str| p[k].as_u64().unwrap_or(0);
            u.0 += n("input_tokens");
            u.1 += n("output_tokens");
            u.2 += n("cache_read_tokens");
            u.3 += n("cache_write_tokens");
        }
        let want: BTreeMap<String, (u64, u64, u64, u64)> = short
            .iter()
            .map(|(m, u)| (m.clone(), (u.input, u.output, u.cache_read, u.cache_write)))
            .collect();
        assert_eq!(
            usage, want,
            "{}: the run's usage, as ccusage counts it (the Stop hook and the sweep together, \
             when both ran)",
            case.name
        );

        if case.stop_hook {
            let errors = of("error");
            assert_eq!(errors[0]["kind"], "agent_error", "{}", case.name);
        }

        let ends = of("session.end");
        assert_eq!(ends.len(), 1, "{}: one session.end", case.name);
        assert_eq!(ends[0]["status"], case.status, "{}: status", case.name);
        assert_eq!(
            ends[0]["exit_code"], case.exit_code,
            "{}: exit code",
            case.name
        );
        let duration = ends[0]["duration_ms"].as_u64().expect("duration_ms");
        let (lo, hi) = case.duration_ms;
        assert!(
            (lo..hi).contains(&duration) && duration <= took.as_millis() as u64,
            "{}: duration {duration} ms, run took {took:?}",
            case.name
        );
    }
}

/// `brain-emit/integrations/isolate/check.sh`: the patch applies with no fuzz, and the wrapper
/// passes shellcheck before and after it.
#[test]
fn isolate_patch_applies_and_passes_shellcheck() {
    let have_shellcheck = tool_available("shellcheck", "the isolate wrapper");
    let out = Command::new("bash")
        .arg(repo_root().join("brain-emit/integrations/isolate/check.sh"))
        .output()
        .expect("run isolate/check.sh");
    assert_ok("brain-emit/integrations/isolate/check.sh", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("brain.patch applies to m8trx-claude-isolate"));
    if have_shellcheck {
        assert!(
            stdout.contains("shellcheck m8trx-claude-isolate (before and after brain.patch)"),
            "{stdout}"
        );
    }
}

//! Configuration: the env file, the process environment and command-line flags, resolved once
//! into [`Settings`].
//!
//! Precedence is flag > environment > env file > default, applied in one place
//! ([`Settings::resolve`]). This module is the only one that reads the process environment
//! (`clippy.toml` bans `std::env::var` elsewhere). Resolution never fails: a hook must run
//! with whatever it can find, so problems (an unreadable env file, an invalid agent id) are
//! collected in [`Settings::warnings`] for the caller to record.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use shared_proto::env_vars;
use shared_proto::{AgentId, RunId};

/// Default location of the env file written by cloud-init.
pub const DEFAULT_ENV_FILE: &str = "/etc/m8trx/brain.env";

/// Directory of the system-wide spool, used when it is writable.
pub const SYSTEM_SPOOL_DIR: &str = "/var/lib/m8trx/brain-emit";

/// Maximum spool size in bytes (sum of queued envelope sizes); default 512 MiB.
pub const BRAIN_SPOOL_MAX_BYTES: &str = "BRAIN_SPOOL_MAX_BYTES";

/// `brain-emit doctor`: the managed-settings drop-in to check (default
/// [`crate::doctor::DEFAULT_DROP_IN`]); read by clap, for tests and unusual layouts.
pub const BRAIN_DROP_IN: &str = "BRAIN_DROP_IN";

/// `brain-emit doctor`: the `systemctl` to ask about the heartbeat timer; read by clap, for
/// tests.
pub const BRAIN_SYSTEMCTL: &str = "BRAIN_SYSTEMCTL";

/// Default bound of the spool, in bytes (512 MiB).
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// Values given on the command line; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--url`.
    pub url: Option<String>,
    /// `--api-key`.
    pub api_key: Option<String>,
    /// `--spool`.
    pub spool: Option<PathBuf>,
    /// `--agent-id`.
    pub agent_id: Option<String>,
    /// `--run-id`.
    pub run_id: Option<String>,
    /// `session.start --paperclip-run-id`: Paperclip's run id, which is also the envelope's
    /// run id when no `--run-id` or `BRAIN_RUN_ID` names one and it is a valid run id (see
    /// [`Settings::run_id`]).
    pub paperclip_run_id: Option<String>,
}

/// Where the agent id came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentIdSource {
    /// `--agent-id`.
    Flag,
    /// An environment variable or env-file key (its name).
    Configured(&'static str),
    /// Nothing usable was configured; `host_<first 32 chars of /etc/machine-id>` is used
    /// instead (unique per installed system, unlike hostnames: default cloud hostnames repeat
    /// across customers, and an agent id belongs to the first customer that sends it).
    MachineIdFallback,
    /// Nothing usable was configured and `/etc/machine-id` is unreadable: `host_<hostname>`.
    HostFallback,
}

impl AgentIdSource {
    /// Whether the id was made up from the host because none was configured.
    pub fn is_fallback(&self) -> bool {
        matches!(
            self,
            AgentIdSource::MachineIdFallback | AgentIdSource::HostFallback
        )
    }
}

impl fmt::Display for AgentIdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentIdSource::Flag => f.write_str("--agent-id"),
            AgentIdSource::Configured(name) => f.write_str(name),
            AgentIdSource::MachineIdFallback => {
                f.write_str("machine-id fallback (no agent id configured)")
            }
            AgentIdSource::HostFallback => f.write_str(
                "hostname fallback (no agent id configured, /etc/machine-id unreadable)",
            ),
        }
    }
}

/// Everything the emitter needs to know, resolved once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL of `brain-server`, without a trailing `/`; `None` when not configured.
    pub url: Option<String>,
    /// The customer's API key; `None` when not configured.
    pub api_key: Option<SecretString>,
    /// The agent id put on every event.
    pub agent_id: AgentId,
    /// Where [`Settings::agent_id`] came from.
    pub agent_id_source: AgentIdSource,
    /// The run id put on every event: the first valid one of `--run-id`, `BRAIN_RUN_ID`,
    /// `session.start --paperclip-run-id`, `PAPERCLIP_RUN_ID`; hook events fall back to the
    /// Claude session id when this is `None`.
    ///
    /// `BRAIN_RUN_ID` outranks `--paperclip-run-id` because it is what the Claude Code hooks
    /// of the run see (the isolate wrapper exports it to the agent): the wrapper's
    /// `session.start` must carry the same run id as the hooks' events to join them. Both
    /// Paperclip sources (flag, then variable) come after the Brain ones.
    pub run_id: Option<RunId>,
    /// Path of the SQLite spool file.
    pub spool_path: PathBuf,
    /// Bound of the spool, in bytes.
    pub spool_max_bytes: u64,
    /// The env file that was consulted.
    pub env_file: PathBuf,
    /// Whether `BRAIN_ENV_FILE` named [`Settings::env_file`] (else it is the default,
    /// [`DEFAULT_ENV_FILE`]).
    pub env_file_from_variable: bool,
    /// Problems met while resolving (unreadable env file, invalid values); never fatal.
    pub warnings: Vec<String>,
}

impl Settings {
    /// Resolves settings from the env file, the process environment and `flags`.
    ///
    /// Never fails; see [`Settings::warnings`].
    pub fn resolve(flags: &Overrides) -> Settings {
        let env = Sources::from_process();
        Settings::resolve_from(flags, &env)
    }

    /// Resolves settings from the env file and the process environment only (no flags), as
    /// `brain-heartbeat` does.
    pub fn from_env() -> Settings {
        Settings::resolve(&Overrides::default())
    }

    fn resolve_from(flags: &Overrides, sources: &Sources) -> Settings {
        let mut warnings = Vec::new();
        let url = flags
            .url
            .clone()
            .or_else(|| sources.get(env_vars::BRAIN_URL))
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty());
        let api_key = flags
            .api_key
            .clone()
            .or_else(|| sources.get(env_vars::BRAIN_API_KEY))
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .map(SecretString::from);

        let (agent_id, agent_id_source) = resolve_agent_id(flags, sources, &mut warnings);

        let run_id = resolve_run_id(flags, sources, &mut warnings);

        let spool_path = flags
            .spool
            .clone()
            .or_else(|| sources.get(env_vars::BRAIN_SPOOL).map(PathBuf::from))
            .unwrap_or_else(default_spool_path);

        let spool_max_bytes = match sources.get(BRAIN_SPOOL_MAX_BYTES) {
            None => DEFAULT_SPOOL_MAX_BYTES,
            Some(v) => v.trim().parse::<u64>().unwrap_or_else(|_| {
                warnings.push(format!(
                    "{BRAIN_SPOOL_MAX_BYTES}={v:?} is not a byte count; using {DEFAULT_SPOOL_MAX_BYTES}"
                ));
                DEFAULT_SPOOL_MAX_BYTES
            }),
        };

        warnings.extend(sources.file_error.iter().cloned());
        Settings {
            url,
            api_key,
            agent_id,
            agent_id_source,
            run_id,
            spool_path,
            spool_max_bytes,
            env_file: sources.file_path.clone(),
            env_file_from_variable: sources.file_from_variable,
            warnings,
        }
    }

    /// Resolves settings from `flags`, an env file holding `file` and an environment holding
    /// only `env`, with no I/O; for tests.
    #[cfg(test)]
    pub(crate) fn resolve_for_test(
        flags: &Overrides,
        file: &str,
        env: &[(&str, &str)],
    ) -> Settings {
        let sources = Sources {
            file: parse_env_file(file),
            file_path: PathBuf::from("/test/brain.env"),
            file_from_variable: true,
            file_error: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        Settings::resolve_from(flags, &sources)
    }

    /// True when both a URL and an API key are configured, i.e. a flush can be attempted.
    pub fn can_deliver(&self) -> bool {
        self.url.is_some() && self.api_key.is_some()
    }

    /// The API key's plaintext, for the `Authorization` header.
    pub(crate) fn api_key_plain(&self) -> Option<&str> {
        self.api_key.as_ref().map(ExposeSecret::expose_secret)
    }

    /// The spool options these settings ask for.
    pub fn spool_options(&self) -> crate::spool::SpoolOptions {
        crate::spool::SpoolOptions {
            max_bytes: self.spool_max_bytes,
            ..crate::spool::SpoolOptions::default()
        }
    }
}

/// The first valid run id of `--run-id`, `BRAIN_RUN_ID`, `--paperclip-run-id`,
/// `PAPERCLIP_RUN_ID` (see [`Settings::run_id`]). An invalid value is skipped with a warning,
/// except `--paperclip-run-id`'s: that flag is first the payload's `paperclip_run_id`, which
/// takes any text, so an id that cannot be a run id is only not used for the envelope.
fn resolve_run_id(
    flags: &Overrides,
    sources: &Sources,
    warnings: &mut Vec<String>,
) -> Option<RunId> {
    let candidates = [
        flags.run_id.clone().map(|v| ("--run-id", v, true)),
        sources
            .get(env_vars::BRAIN_RUN_ID)
            .map(|v| (env_vars::BRAIN_RUN_ID, v, true)),
        flags
            .paperclip_run_id
            .clone()
            .filter(|v| !v.trim().is_empty())
            .map(|v| ("--paperclip-run-id", v, false)),
        sources
            .get(env_vars::PAPERCLIP_RUN_ID)
            .map(|v| (env_vars::PAPERCLIP_RUN_ID, v, true)),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|(name, v, warn)| match RunId::parse(v.trim()) {
            Ok(id) => Some(id),
            Err(e) => {
                if warn {
                    warnings.push(format!("ignoring run id from {name}: it {e}"));
                }
                None
            }
        })
}

fn resolve_agent_id(
    flags: &Overrides,
    sources: &Sources,
    warnings: &mut Vec<String>,
) -> (AgentId, AgentIdSource) {
    let candidates = [
        flags.agent_id.clone().map(|v| (AgentIdSource::Flag, v)),
        sources
            .get(env_vars::BRAIN_AGENT_ID)
            .map(|v| (AgentIdSource::Configured(env_vars::BRAIN_AGENT_ID), v)),
        sources
            .get(env_vars::PAPERCLIP_AGENT_ID)
            .map(|v| (AgentIdSource::Configured(env_vars::PAPERCLIP_AGENT_ID), v)),
    ];
    for (source, value) in candidates.into_iter().flatten() {
        match AgentId::parse(value.trim()) {
            Ok(id) => return (id, source),
            Err(e) => warnings.push(format!("ignoring agent id from {source}: it {e}")),
        }
    }
    let machine_id = std::fs::read_to_string(MACHINE_ID_PATH).ok();
    let hostname = || {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .unwrap_or_default()
    };
    host_agent_id(machine_id.as_deref(), hostname)
}

/// Where systemd keeps the installed system's unique id.
const MACHINE_ID_PATH: &str = "/etc/machine-id";

/// `host_<first 32 chars of the machine id>` when `machine_id` holds one, else
/// `host_<hostname>`; characters outside the id alphabet are replaced by `_`.
fn host_agent_id(
    machine_id: Option<&str>,
    hostname: impl FnOnce() -> String,
) -> (AgentId, AgentIdSource) {
    let machine: String = machine_id
        .unwrap_or_default()
        .trim()
        .chars()
        .take(32)
        .filter(char::is_ascii_alphanumeric)
        .collect();
    if !machine.is_empty()
        && let Ok(id) = AgentId::parse(format!("host_{machine}"))
    {
        return (id, AgentIdSource::MachineIdFallback);
    }
    (hostname_agent_id(&hostname()), AgentIdSource::HostFallback)
}

/// `host_<hostname>`, with characters outside the id alphabet replaced by `_`.
fn hostname_agent_id(raw: &str) -> AgentId {
    let clean: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    let name = if clean.is_empty() {
        "unknown".to_owned()
    } else {
        clean
    };
    AgentId::parse(format!("host_{name}"))
        .or_else(|_| AgentId::parse("host_unknown"))
        .expect("`host_unknown` is a valid agent id")
}

/// The system spool when its directory is writable, else the user's data directory.
fn default_spool_path() -> PathBuf {
    let system = Path::new(SYSTEM_SPOOL_DIR).join("spool.db");
    if writable_spool(&system) {
        return system;
    }
    match directories::BaseDirs::new() {
        Some(dirs) => dirs
            .data_local_dir()
            .join("m8trx")
            .join("brain-emit")
            .join("spool.db"),
        None => std::env::temp_dir()
            .join("m8trx-brain-emit")
            .join("spool.db"),
    }
}

/// Whether `path` can be opened for writing (creating it when its directory exists).
fn writable_spool(path: &Path) -> bool {
    if path.parent().is_none_or(|d| !d.is_dir()) {
        return false;
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .is_ok()
}

/// The env file's key/value pairs and a snapshot lookup into the process environment.
struct Sources {
    file: HashMap<String, String>,
    file_path: PathBuf,
    file_from_variable: bool,
    file_error: Option<String>,
    env: HashMap<String, String>,
}

impl Sources {
    #[expect(
        clippy::disallowed_methods,
        reason = "the config module is the one place that reads the environment"
    )]
    fn from_process() -> Sources {
        let env: HashMap<String, String> = [
            env_vars::BRAIN_URL,
            env_vars::BRAIN_API_KEY,
            env_vars::BRAIN_ENV_FILE,
            env_vars::BRAIN_SPOOL,
            env_vars::BRAIN_AGENT_ID,
            env_vars::PAPERCLIP_AGENT_ID,
            env_vars::BRAIN_RUN_ID,
            env_vars::PAPERCLIP_RUN_ID,
            BRAIN_SPOOL_MAX_BYTES,
        ]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_owned(), v)))
        .collect();
        let named = env.get(env_vars::BRAIN_ENV_FILE).filter(|p| !p.is_empty());
        let file_from_variable = named.is_some();
        let file_path = named.map_or_else(|| PathBuf::from(DEFAULT_ENV_FILE), PathBuf::from);
        let (file, file_error) = match std::fs::read_to_string(&file_path) {
            Ok(text) => (parse_env_file(&text), None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (HashMap::new(), None),
            Err(e) => (
                HashMap::new(),
                Some(format!("cannot read env file {}: {e}", file_path.display())),
            ),
        };
        Sources {
            file,
            file_path,
            file_from_variable,
            file_error,
            env,
        }
    }

    /// The environment's value, else the env file's; empty values count as unset.
    fn get(&self, key: &str) -> Option<String> {
        self.env
            .get(key)
            .filter(|v| !v.is_empty())
            .or_else(|| self.file.get(key).filter(|v| !v.is_empty()))
            .cloned()
    }
}

/// Parses `KEY=VALUE` lines: blank lines and `#` comments are skipped, an optional `export `
/// prefix is allowed, and one pair of matching single or double quotes around the value is
/// removed. Lines without `=` are ignored.
pub(crate) fn parse_env_file(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() {
            continue;
        }
        let value = value.trim();
        let value = ['"', '\'']
            .into_iter()
            .find_map(|q| {
                value
                    .strip_prefix(q)
                    .and_then(|v| v.strip_suffix(q))
                    .filter(|_| value.len() >= 2)
            })
            .unwrap_or(value);
        out.insert(key.to_owned(), value.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(file: &str, env: &[(&str, &str)]) -> Sources {
        Sources {
            file: parse_env_file(file),
            file_path: PathBuf::from("/test/brain.env"),
            file_from_variable: true,
            file_error: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// The resolved run id and the warnings, for `flags` over `file` and `env`.
    fn run_id_of(
        run_id: Option<&str>,
        paperclip_run_id: Option<&str>,
        file: &str,
        env: &[(&str, &str)],
    ) -> (Option<String>, Vec<String>) {
        let flags = Overrides {
            run_id: run_id.map(str::to_owned),
            paperclip_run_id: paperclip_run_id.map(str::to_owned),
            ..Overrides::default()
        };
        let settings = Settings::resolve_for_test(&flags, file, env);
        (
            settings.run_id.map(|r| r.as_str().to_owned()),
            settings.warnings,
        )
    }

    #[test]
    fn run_id_precedence() {
        let all_env = [("BRAIN_RUN_ID", "run_env"), ("PAPERCLIP_RUN_ID", "pc_env")];
        // --run-id > BRAIN_RUN_ID > --paperclip-run-id > PAPERCLIP_RUN_ID.
        // (--run-id, --paperclip-run-id, environment, the run id).
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            &'a [(&'a str, &'a str)],
            Option<&'a str>,
        );
        let cases: [Case<'_>; 6] = [
            (
                Some("run_flag"),
                Some("pc_flag"),
                &all_env,
                Some("run_flag"),
            ),
            (None, Some("pc_flag"), &all_env, Some("run_env")),
            (None, Some("pc_flag"), &all_env[1..], Some("pc_flag")),
            (None, None, &all_env[1..], Some("pc_env")),
            // The wrapper's case that left the envelope without a run: the flag alone.
            (None, Some("run_1"), &[], Some("run_1")),
            (None, None, &[], None),
        ];
        for (run_id, paperclip, env, want) in cases {
            let (got, warnings) = run_id_of(run_id, paperclip, "", env);
            assert_eq!(
                got.as_deref(),
                want,
                "--run-id {run_id:?}, --paperclip-run-id {paperclip:?}, env {env:?}"
            );
            assert!(warnings.is_empty(), "{warnings:?}");
        }
    }

    #[test]
    fn run_id_environment_outranks_the_env_file_per_variable() {
        let (got, _) = run_id_of(None, None, "BRAIN_RUN_ID=run_file", &[]);
        assert_eq!(got.as_deref(), Some("run_file"));
        let (got, _) = run_id_of(
            None,
            None,
            "BRAIN_RUN_ID=run_file",
            &[("BRAIN_RUN_ID", "run_env")],
        );
        assert_eq!(got.as_deref(), Some("run_env"));
        // A Brain variable in the file still outranks the Paperclip flag and variable.
        let (got, _) = run_id_of(
            None,
            Some("pc_flag"),
            "BRAIN_RUN_ID=run_file",
            &[("PAPERCLIP_RUN_ID", "pc_env")],
        );
        assert_eq!(got.as_deref(), Some("run_file"));
    }

    #[test]
    fn invalid_run_ids_are_skipped() {
        // An invalid --paperclip-run-id is only the payload's: skipped silently.
        let (got, warnings) = run_id_of(None, Some("run/1 with spaces"), "", &[]);
        assert_eq!(got, None);
        assert!(warnings.is_empty(), "{warnings:?}");
        let (got, warnings) = run_id_of(
            None,
            Some(&"r".repeat(129)),
            "",
            &[("PAPERCLIP_RUN_ID", "pc_env")],
        );
        assert_eq!(got.as_deref(), Some("pc_env"));
        assert!(warnings.is_empty(), "{warnings:?}");
        // An invalid configured one is skipped with a warning naming its source.
        let (got, warnings) = run_id_of(
            Some("bad id"),
            Some("pc_flag"),
            "",
            &[("BRAIN_RUN_ID", "bad/env")],
        );
        assert_eq!(got.as_deref(), Some("pc_flag"));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("--run-id"), "{warnings:?}");
        assert!(warnings[1].contains("BRAIN_RUN_ID"), "{warnings:?}");
        // Blank means not given.
        let (got, warnings) = run_id_of(None, Some("  "), "", &[("BRAIN_RUN_ID", "")]);
        assert_eq!(got, None);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn env_file_syntax() {
        let m = parse_env_file(
            "# comment\n\nBRAIN_URL=\"http://brain:8080/\"\nexport BRAIN_API_KEY='m8brain_dev_X'\n  SPACED = v a l \nnoequals\nEMPTY=\nQ=\"\n",
        );
        assert_eq!(m["BRAIN_URL"], "http://brain:8080/");
        assert_eq!(m["BRAIN_API_KEY"], "m8brain_dev_X");
        assert_eq!(m["SPACED"], "v a l");
        assert_eq!(m["EMPTY"], "");
        assert_eq!(m["Q"], "\"");
        assert!(!m.contains_key("noequals"));
    }

    #[test]
    fn precedence_flag_env_file() {
        let s = sources(
            "BRAIN_URL=http://file\nBRAIN_AGENT_ID=file_agent\nBRAIN_API_KEY=filekey",
            &[
                ("BRAIN_URL", "http://env/"),
                ("PAPERCLIP_AGENT_ID", "pc_agent"),
            ],
        );
        let settings = Settings::resolve_from(&Overrides::default(), &s);
        assert_eq!(settings.url.as_deref(), Some("http://env"));
        assert_eq!(settings.api_key_plain(), Some("filekey"));
        // BRAIN_AGENT_ID (file) outranks PAPERCLIP_AGENT_ID (env): the variable order wins,
        // and for each variable the environment outranks the file.
        assert_eq!(settings.agent_id.as_str(), "file_agent");

        let flags = Overrides {
            url: Some("http://flag".into()),
            agent_id: Some("flag_agent".into()),
            ..Overrides::default()
        };
        let settings = Settings::resolve_from(&flags, &s);
        assert_eq!(settings.url.as_deref(), Some("http://flag"));
        assert_eq!(settings.agent_id.as_str(), "flag_agent");
        assert_eq!(settings.agent_id_source, AgentIdSource::Flag);
    }

    #[test]
    fn agent_id_falls_back_to_host() {
        let s = sources("", &[("BRAIN_AGENT_ID", "bad id/with slash")]);
        let settings = Settings::resolve_from(&Overrides::default(), &s);
        assert!(settings.agent_id_source.is_fallback());
        assert!(settings.agent_id.as_str().starts_with("host_"));
        assert_eq!(settings.warnings.len(), 1);
    }

    #[test]
    fn host_fallback_prefers_the_machine_id() {
        let (id, source) = host_agent_id(Some("3d1219c7c4c5404aaa1f6d2a48adfda4\n"), || {
            unreachable!("the hostname is not needed")
        });
        assert_eq!(id.as_str(), "host_3d1219c7c4c5404aaa1f6d2a48adfda4");
        assert_eq!(source, AgentIdSource::MachineIdFallback);
        // Longer ids are cut to 32 characters.
        let (id, _) = host_agent_id(Some(&"ab".repeat(40)), String::new);
        assert_eq!(id.as_str().len(), "host_".len() + 32);
        // Unreadable or empty: the hostname.
        for machine_id in [None, Some(""), Some(" \n")] {
            let (id, source) = host_agent_id(machine_id, || "ip-10-0-0-1.ec2.internal\n".into());
            assert_eq!(id.as_str(), "host_ip-10-0-0-1.ec2.internal");
            assert_eq!(source, AgentIdSource::HostFallback);
        }
    }

    #[test]
    fn run_id_order_and_spool_bound() {
        let s = sources(
            "PAPERCLIP_RUN_ID=run_b\nBRAIN_SPOOL_MAX_BYTES=1000",
            &[("BRAIN_RUN_ID", "run_a"), ("BRAIN_SPOOL", "/x/spool.db")],
        );
        let settings = Settings::resolve_from(&Overrides::default(), &s);
        assert_eq!(
            settings.run_id.map(|r| r.as_str().to_owned()).as_deref(),
            Some("run_a")
        );
        assert_eq!(settings.spool_path, PathBuf::from("/x/spool.db"));
        assert_eq!(settings.spool_max_bytes, 1000);
    }
}

//! `cloud-init/`: the checks of `cloud-init/check.sh` (schema, embedded script, shellcheck),
//! and the provisioning script run for real in a temporary root, against a stand-in `aws` CLI
//! on `PATH` (`fake/aws`, answering from directories the test fills) and a real `brain-server`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::helpers::{Backend, EMIT_BIN, Server, Stored};
use crate::provisioning::{assert_ok, repo_root, tool_available};

const SCRIPT: &str = "cloud-init/m8trx-brain-provision.sh";
const REGION: &str = "eu-west-1";
const URL_PARAMETER: &str = "/m8trx/brain_url";
const RELEASE: &str = "s3://m8trx-releases/m8trx-brain-test-x86_64-linux.tar.gz";

/// The Claude Code hooks drop-in, in the repository.
fn dropin() -> PathBuf {
    repo_root().join("brain-emit/integrations/claude-code/50-m8trx-brain.json")
}

/// A box to provision: an empty root, a fake Parameter Store and S3 bucket, a `PATH` with
/// the fake `aws` first, and the release unpacked in `dist/`.
struct TestBox {
    dir: TempDir,
}

impl TestBox {
    fn new() -> TestBox {
        let b = TestBox {
            dir: tempfile::tempdir().expect("box dir"),
        };
        for d in [
            "root",
            "ssm",
            "s3/m8trx-releases",
            "bin",
            "dist/bin",
            "dist/systemd",
        ] {
            fs::create_dir_all(b.path(d)).expect("mkdir");
        }
        fs::create_dir_all(b.path("dist/claude-code")).expect("mkdir");
        fs::copy(repo_root().join("e2e/tests/it/fake/aws"), b.path("bin/aws"))
            .expect("install the fake aws");
        // The release: the real brain-emit, a stand-in brain-heartbeat (the e2e package
        // builds no heartbeat), the real units and hooks drop-in.
        fs::copy(EMIT_BIN, b.path("dist/bin/brain-emit")).expect("copy brain-emit");
        fs::write(b.path("dist/bin/brain-heartbeat"), "#!/bin/sh\nexit 0\n").expect("stub");
        fs::set_permissions(
            b.path("dist/bin/brain-heartbeat"),
            fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        for unit in [
            "m8trx-brain-heartbeat.service",
            "m8trx-brain-heartbeat.timer",
        ] {
            fs::copy(
                repo_root().join("systemd").join(unit),
                b.path("dist/systemd").join(unit),
            )
            .expect("copy unit");
        }
        fs::copy(dropin(), b.path("dist/claude-code/50-m8trx-brain.json")).expect("drop-in");
        b
    }

    /// Puts the release (`dist/` as a tarball) in the fake bucket, at [`RELEASE`].
    fn publish_release(&self) {
        let tar = Command::new("tar")
            .arg("-czf")
            .arg(self.path("s3/m8trx-releases/m8trx-brain-test-x86_64-linux.tar.gz"))
            .arg("-C")
            .arg(self.path("dist"))
            .args(["bin", "systemd", "claude-code"])
            .output()
            .expect("run tar");
        assert_ok("tar", &tar);
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn root(&self, rel: &str) -> PathBuf {
        self.path("root").join(rel.trim_start_matches('/'))
    }

    /// Stores an SSM parameter.
    fn put_parameter(&self, name: &str, kind: &str, value: &str) {
        let dir = self.path("ssm").join(name.trim_start_matches('/'));
        fs::create_dir_all(&dir).expect("mkdir parameter");
        fs::write(dir.join("value"), value).expect("write value");
        fs::write(dir.join("type"), kind).expect("write type");
    }

    /// Runs the provisioning script with `args` (after `--root`), the fake aws first on PATH.
    fn provision(&self, args: &[&str]) -> Output {
        // Port 9 (discard) is closed: the metadata service cannot answer.
        self.provision_with_imds(args, "http://127.0.0.1:9")
    }

    /// As [`TestBox::provision`], with the instance metadata service at `imds`.
    fn provision_with_imds(&self, args: &[&str], imds: &str) -> Output {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var_os("PATH")
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        Command::new("bash")
            .arg(repo_root().join(SCRIPT))
            .arg("--root")
            .arg(self.path("root"))
            .args(args)
            .env("PATH", path)
            .env("FAKE_SSM_DIR", self.path("ssm"))
            .env("FAKE_S3_DIR", self.path("s3"))
            .env("FAKE_AWS_LOG", self.path("aws.log"))
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env("BRAIN_IMDS_ENDPOINT", imds)
            .output()
            .expect("run the provisioning script")
    }

    fn aws_calls(&self) -> Vec<String> {
        fs::read_to_string(self.path("aws.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `cloud-init/check.sh`: `cloud-init schema` passes (and rejects a broken copy), the script
/// embedded in the cloud-config is the script file, and both scripts pass shellcheck.
#[test]
fn cloud_config_passes_schema_and_shellcheck() {
    let have_cloud_init = tool_available("cloud-init", "brain.cloud-config.yaml");
    let have_shellcheck = tool_available("shellcheck", "the provisioning script");
    let out = Command::new("bash")
        .arg(repo_root().join("cloud-init/check.sh"))
        .output()
        .expect("run cloud-init/check.sh");
    assert_ok("cloud-init/check.sh", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if have_cloud_init {
        for line in [
            "Valid cloud-config:",
            "negative control (unknown write_files encoding) rejected by cloud-init schema: ok",
            "embedded script == m8trx-brain-provision.sh: ok",
        ] {
            assert!(stdout.contains(line), "missing {line:?}:\n{stdout}");
        }
    }
    if have_shellcheck {
        assert!(stdout.contains("shellcheck m8trx-brain-provision.sh check.sh: ok"));
    }
}

/// A box provisioned from the fake SSM and S3: the env file is 0600 and holds exactly the URL
/// and key, the binaries, units and hooks drop-in are installed, the timer is enabled, the key
/// shows nowhere in the output — and the installed brain-emit, reading only that env file,
/// delivers an event to a real server with that key. A second run picks up a rotated key.
#[test]
fn provisioning_script_installs_a_working_box() {
    if !tool_available(
        "systemctl",
        "the provisioning script (it enables the timer)",
    ) {
        return;
    }
    let Some(mut server) = Server::new(Backend::Sqlite) else {
        return;
    };
    let key = server.mint_key("acme");
    server.start();
    let b = TestBox::new();
    b.publish_release();
    b.put_parameter(URL_PARAMETER, "String", &server.url());
    b.put_parameter("/m8trx/acme/brain_api_key", "SecureString", &key);

    let args = [
        "--customer",
        "acme",
        "--region",
        REGION,
        "--release-uri",
        RELEASE,
    ];
    let out = b.provision(&args);
    assert_ok("provisioning", &out);
    assert!(!text(&out).contains(&key), "the key was printed");

    // The two SSM reads decrypt, in the given region; the release comes from S3.
    let calls = b.aws_calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    for (call, name) in calls
        .iter()
        .zip([URL_PARAMETER, "/m8trx/acme/brain_api_key"])
    {
        assert!(call.starts_with("ssm get-parameter "), "{call}");
        assert!(call.contains(&format!("--name {name} ")), "{call}");
        assert!(call.contains("--with-decryption"), "{call}");
        assert!(call.contains(&format!("--region {REGION}")), "{call}");
    }
    assert!(calls[2].starts_with("s3 cp ") && calls[2].contains(RELEASE));

    let env_file = b.root("/etc/m8trx/brain.env");
    assert_eq!(format!("{:o}", mode(&env_file)), "600", "brain.env mode");
    let env_text = fs::read_to_string(&env_file).expect("read brain.env");
    let values: Vec<&str> = env_text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        values,
        [
            format!("BRAIN_URL={}", server.url()),
            format!("BRAIN_API_KEY={key}")
        ]
    );
    let leftovers: Vec<_> = fs::read_dir(b.root("/etc/m8trx"))
        .expect("read /etc/m8trx")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, ["brain.env"], "no temporary file left behind");

    for (path, want_mode, source) in [
        ("/usr/local/bin/brain-emit", 0o755, PathBuf::from(EMIT_BIN)),
        (
            "/etc/systemd/system/m8trx-brain-heartbeat.service",
            0o644,
            repo_root().join("systemd/m8trx-brain-heartbeat.service"),
        ),
        (
            "/etc/systemd/system/m8trx-brain-heartbeat.timer",
            0o644,
            repo_root().join("systemd/m8trx-brain-heartbeat.timer"),
        ),
        (
            "/etc/claude-code/managed-settings.d/50-m8trx-brain.json",
            0o644,
            dropin(),
        ),
    ] {
        let installed = b.root(path);
        assert_eq!(
            mode(&installed),
            want_mode,
            "{path} mode: {:o}",
            mode(&installed)
        );
        assert_eq!(
            fs::read(&installed).expect("read installed"),
            fs::read(&source).expect("read source"),
            "{path} is the release's file"
        );
    }
    assert_eq!(mode(&b.root("/usr/local/bin/brain-heartbeat")), 0o755);
    assert!(b.root("/var/lib/m8trx/brain-emit").is_dir(), "spool dir");
    let link = b.root("/etc/systemd/system/timers.target.wants/m8trx-brain-heartbeat.timer");
    assert_eq!(
        fs::read_link(&link).expect("the timer is enabled"),
        Path::new("/etc/systemd/system/m8trx-brain-heartbeat.timer")
    );

    // The installed brain-emit with nothing but the written env file delivers to the server.
    let spool = b.path("spool.db");
    let emit = |args: &[&str]| {
        Command::new(b.root("/usr/local/bin/brain-emit"))
            .args(args)
            .env_clear()
            .env("BRAIN_ENV_FILE", &env_file)
            .env("BRAIN_SPOOL", &spool)
            .env("BRAIN_AGENT_ID", "agent_acme_provisioned")
            .output()
            .expect("run the installed brain-emit")
    };
    assert_ok(
        "session.start",
        &emit(&["session.start", "--paperclip-run-id", "run_provisioned"]),
    );
    assert_ok("flush --wait", &emit(&["flush", "--wait"]));
    let Stored { events, .. } = server.stored();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_type, "session.start");

    // Rotation: the parameter changes, the script runs again, the file follows (still 0600).
    let rotated = server.mint_key("acme");
    b.put_parameter("/m8trx/acme/brain_api_key", "SecureString", &rotated);
    assert_ok("provisioning again", &b.provision(&args));
    let env_text = fs::read_to_string(&env_file).expect("read brain.env");
    assert!(env_text.contains(&format!("BRAIN_API_KEY={rotated}\n")));
    assert!(!env_text.contains(&key));
    assert_eq!(mode(&env_file), 0o600);
}

/// What must stop the provisioning before it writes anything: a missing key parameter (aws's
/// own ParameterNotFound passed on), a URL parameter that is not an http(s) URL, no region, a
/// release missing from S3, and the cloud-config's unreplaced placeholder slug.
#[test]
fn provisioning_script_refuses_a_bad_setup() {
    let b = TestBox::new();
    b.put_parameter(URL_PARAMETER, "String", "http://brain.tailnet:8080");
    let cases: [(&[&str], &str, &str); 5] = [
        (
            &["--customer", "acme", "--region", REGION, "--dist"],
            "ParameterNotFound",
            "cannot read the API key from SSM parameter /m8trx/acme/brain_api_key",
        ),
        (
            &[
                "--customer",
                "nourl",
                "--region",
                REGION,
                "--url-parameter",
                "/m8trx/bad_url",
                "--dist",
            ],
            "",
            "SSM parameter /m8trx/bad_url is not an http(s) URL",
        ),
        (
            &["--customer", "acme", "--dist"],
            "",
            "the metadata service did not answer",
        ),
        (
            &[
                "--customer",
                "acme",
                "--region",
                REGION,
                "--release-uri",
                "s3://m8trx-releases/missing.tar.gz",
            ],
            "does not exist",
            "cannot fetch s3://m8trx-releases/missing.tar.gz",
        ),
        (
            &["--customer", "CUSTOMER_SLUG", "--region", REGION, "--dist"],
            "",
            "--customer must be a slug",
        ),
    ];
    b.put_parameter("/m8trx/bad_url", "String", "brain.tailnet:8080");
    b.put_parameter(
        "/m8trx/nourl/brain_api_key",
        "SecureString",
        "m8brain_dev_X",
    );
    let dist = b.path("dist").display().to_string();
    for (n, (args, aws_says, script_says)) in cases.into_iter().enumerate() {
        let mut args: Vec<&str> = args.to_vec();
        if args.last() == Some(&"--dist") {
            args.push(&dist);
        }
        if n == 3 {
            // The key exists for this case: only the release is missing.
            b.put_parameter("/m8trx/acme/brain_api_key", "SecureString", "m8brain_dev_Y");
        }
        let out = b.provision(&args);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains(aws_says), "{args:?}: {said}");
        assert!(said.contains(script_says), "{args:?}: {said}");
        assert!(
            !b.root("/etc/m8trx/brain.env").exists(),
            "{args:?} wrote the env file"
        );
    }
}

/// A stand-in for the EC2 instance metadata service, IMDSv2 only: `PUT /latest/api/token`
/// with a TTL header gives a token; `GET /latest/meta-data/placement/region` with that token
/// gives `region`; anything else is 401, as IMDSv2 answers a request without a token. Serves
/// `requests` requests on its own thread; the URL and the requests' first lines.
fn fake_imds(
    region: &'static str,
    requests: usize,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake IMDS");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).expect("read request") == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_owned());
            }
            let has = |h: &str| head.iter().any(|l| l.to_ascii_lowercase().starts_with(h));
            let body = match head.first().map(String::as_str) {
                Some("PUT /latest/api/token HTTP/1.1")
                    if has("x-aws-ec2-metadata-token-ttl-seconds:") =>
                {
                    Some("AQAEAtoken")
                }
                Some("GET /latest/meta-data/placement/region HTTP/1.1")
                    if has("x-aws-ec2-metadata-token: aqaeatoken") =>
                {
                    Some(region)
                }
                _ => None,
            };
            let response = match body {
                Some(b) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                ),
                None => {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_owned()
                }
            };
            stream.write_all(response.as_bytes()).expect("answer");
            seen.push(head.first().cloned().unwrap_or_default());
        }
        seen
    });
    (url, handle)
}

/// Without `--region` or `AWS_REGION`, the region comes from the instance metadata service
/// (IMDSv2: token, then region) and every aws call uses it.
#[test]
fn provisioning_script_takes_the_region_from_imdsv2() {
    if !tool_available("curl", "the region lookup") || !tool_available("systemctl", "the timer") {
        return;
    }
    let b = TestBox::new();
    b.put_parameter(URL_PARAMETER, "String", "http://brain.tailnet:8080");
    b.put_parameter(
        "/m8trx/acme/brain_api_key",
        "SecureString",
        "m8brain_prod_ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
    );
    let (imds, served) = fake_imds("eu-central-1", 2);
    let dist = b.path("dist").display().to_string();
    let out = b.provision_with_imds(&["--customer", "acme", "--dist", &dist], &imds);
    // Had the script stopped asking early, the fake would wait for requests forever: give it
    // empty ones (refused once it has stopped listening).
    for _ in 0..2 {
        let _ = std::net::TcpStream::connect(imds.trim_start_matches("http://"));
    }
    assert_ok("provisioning", &out);
    assert_eq!(
        served.join().expect("the fake IMDS"),
        [
            "PUT /latest/api/token HTTP/1.1",
            "GET /latest/meta-data/placement/region HTTP/1.1"
        ]
    );
    let calls = b.aws_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls.iter().all(|c| c.contains("--region eu-central-1")),
        "{calls:?}"
    );
}

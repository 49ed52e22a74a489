//! `dist/release.sh`: the release tarball has exactly the layout
//! `cloud-init/m8trx-brain-provision.sh` reads and the name `brain.cloud-config.yaml` points at,
//! so the three cannot drift apart. The script packs stand-in binaries (`--bin-dir`), so no
//! `cargo dist` build runs here; the provisioning script then installs a box from the tarball
//! through `--release-uri` (the fake `aws` serving it as S3), as cloud-init does.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::provisioning::{assert_ok, repo_root, tool_available};

const VERSION: &str = "9.9.9-test";
const REGION: &str = "eu-west-1";
const BINARIES: [&str; 3] = ["brain-emit", "brain-heartbeat", "brain-server"];

/// Every file of the customer-box tarball, sorted: what the provisioning script reads (`bin/`,
/// `systemd/`, `claude-code/`) and, for whoever sets a box up, `cloud-init/` and `isolate/`.
const BOX_FILES: [&str; 10] = [
    "bin/brain-emit",
    "bin/brain-heartbeat",
    "claude-code/50-m8trx-brain.json",
    "cloud-init/brain.cloud-config.yaml",
    "cloud-init/m8trx-brain-provision.sh",
    "isolate/README.md",
    "isolate/brain.patch",
    "isolate/m8trx-claude-isolate",
    "systemd/m8trx-brain-heartbeat.service",
    "systemd/m8trx-brain-heartbeat.timer",
];

/// Runs `dist/release.sh` with `args`.
fn release(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo_root().join("dist/release.sh"))
        .args(args)
        .output()
        .expect("run dist/release.sh")
}

/// A directory of executable stand-ins for the three binaries, each printing its own name.
fn stand_in_binaries(dir: &Path) {
    fs::create_dir_all(dir).expect("mkdir bins");
    for b in BINARIES {
        let path = dir.join(b);
        fs::write(&path, format!("#!/bin/sh\necho {b}\n")).expect("write stand-in");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

/// The regular files in tarball `tar`, sorted, without a leading `./`.
fn tar_files(tar: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tzvf")
        .arg(tar)
        .output()
        .expect("run tar");
    assert_ok("tar -tzvf", &out);
    let mut files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches("./").to_owned())
        .collect();
    files.sort();
    files
}

/// The release file name `brain.cloud-config.yaml`'s `runcmd` fetches, with its version
/// placeholder replaced by `version`.
fn cloud_config_release_name(version: &str) -> String {
    let config = fs::read_to_string(repo_root().join("cloud-init/brain.cloud-config.yaml"))
        .expect("read brain.cloud-config.yaml");
    let uri = config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .find(|v| v.starts_with("s3://"))
        .expect("brain.cloud-config.yaml's runcmd has an s3:// release URI");
    let name = uri.rsplit('/').next().expect("a file name");
    assert!(
        name.contains("RELEASE_VERSION"),
        "the release URI {uri} has no RELEASE_VERSION placeholder"
    );
    name.replace("RELEASE_VERSION", version)
}

#[test]
fn release_tarball_is_what_the_provisioning_script_installs() {
    if !tool_available(
        "systemctl",
        "the release tarball through the provisioning script",
    ) {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let d = |rel: &str| -> PathBuf { dir.path().join(rel) };
    stand_in_binaries(&d("bins"));

    // Act: pack the release.
    let out = release(&[
        "--bin-dir",
        d("bins").to_str().unwrap(),
        "--out",
        d("out").to_str().unwrap(),
        "--version",
        VERSION,
    ]);
    assert_ok("dist/release.sh", &out);

    // The names: what the script prints, what cloud-config fetches, and the checksums.
    let box_name = format!("m8trx-brain-{VERSION}-x86_64-linux.tar.gz");
    let server_name = format!("m8trx-brain-server-{VERSION}-x86_64-linux.tar.gz");
    let printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let want: Vec<String> = [box_name.as_str(), server_name.as_str(), "SHA256SUMS"]
        .iter()
        .map(|n| {
            d("out")
                .join(n)
                .canonicalize()
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(printed, want, "release.sh's output");
    assert_eq!(
        cloud_config_release_name(VERSION),
        box_name,
        "brain.cloud-config.yaml fetches a file name release.sh does not make"
    );
    let sums = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(d("out"))
        .output()
        .expect("run sha256sum");
    assert_ok("sha256sum --check SHA256SUMS", &sums);

    // The layouts, exactly.
    assert_eq!(tar_files(&d("out").join(&box_name)), BOX_FILES);
    assert_eq!(
        tar_files(&d("out").join(&server_name)),
        ["bin/brain-server", "systemd/brain-server.service"]
    );

    // The provisioning script installs a box from the tarball, fetched as cloud-init fetches
    // it (`--release-uri`, the fake aws serving S3 and SSM from directories).
    fs::create_dir_all(d("s3/releases")).unwrap();
    fs::copy(d("out").join(&box_name), d("s3/releases").join(&box_name)).unwrap();
    for (name, kind, value) in [
        ("m8trx/brain_url", "String", "http://127.0.0.1:9"),
        (
            "m8trx/acme/brain_api_key",
            "SecureString",
            "m8brain_prod_ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
        ),
    ] {
        let p = d("ssm").join(name);
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("value"), value).unwrap();
        fs::write(p.join("type"), kind).unwrap();
    }
    fs::create_dir_all(d("fakebin")).unwrap();
    fs::copy(
        repo_root().join("e2e/tests/it/fake/aws"),
        d("fakebin").join("aws"),
    )
    .unwrap();
    fs::create_dir_all(d("root")).unwrap();
    let path = format!(
        "{}:{}",
        d("fakebin").display(),
        std::env::var_os("PATH")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let provision = Command::new("bash")
        .arg(repo_root().join("cloud-init/m8trx-brain-provision.sh"))
        .args(["--root", d("root").to_str().unwrap()])
        .args(["--customer", "acme", "--region", REGION, "--release-uri"])
        .arg(format!("s3://releases/{box_name}"))
        .env("PATH", path)
        .env("FAKE_SSM_DIR", d("ssm"))
        .env("FAKE_S3_DIR", d("s3"))
        .output()
        .expect("run the provisioning script");
    assert_ok("m8trx-brain-provision --release-uri", &provision);

    let root = |rel: &str| d("root").join(rel);
    for b in ["brain-emit", "brain-heartbeat"] {
        assert_eq!(
            fs::read(root("usr/local/bin").join(b)).unwrap(),
            fs::read(d("bins").join(b)).unwrap(),
            "{b} installed from the tarball"
        );
    }
    for (installed, source) in [
        (
            "etc/systemd/system/m8trx-brain-heartbeat.service",
            "systemd/m8trx-brain-heartbeat.service",
        ),
        (
            "etc/systemd/system/m8trx-brain-heartbeat.timer",
            "systemd/m8trx-brain-heartbeat.timer",
        ),
        (
            "etc/claude-code/managed-settings.d/50-m8trx-brain.json",
            "brain-emit/integrations/claude-code/50-m8trx-brain.json",
        ),
    ] {
        assert_eq!(
            fs::read(root(installed)).unwrap(),
            fs::read(repo_root().join(source)).unwrap(),
            "{installed} is the repository's {source}"
        );
    }
    assert_eq!(
        fs::read_link(root(
            "etc/systemd/system/timers.target.wants/m8trx-brain-heartbeat.timer"
        ))
        .expect("the timer is enabled"),
        Path::new("/etc/systemd/system/m8trx-brain-heartbeat.timer")
    );
}

#[test]
fn release_refuses_a_brain_emit_over_10_mib() {
    let dir = TempDir::new().expect("tempdir");
    let bins = dir.path().join("bins");
    stand_in_binaries(&bins);
    // One byte over the limit (sparse: costs no disk).
    fs::File::options()
        .write(true)
        .open(bins.join("brain-emit"))
        .unwrap()
        .set_len(10 * 1024 * 1024 + 1)
        .unwrap();

    let out = release(&[
        "--bin-dir",
        bins.to_str().unwrap(),
        "--out",
        dir.path().join("out").to_str().unwrap(),
    ]);

    assert!(
        !out.status.success(),
        "release.sh packed an oversized brain-emit"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("brain-emit is 10485761 bytes, over the 10 MiB (10485760) limit"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("out").exists(),
        "nothing is written when the check fails"
    );
}

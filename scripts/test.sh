#!/usr/bin/env bash
# The whole test suite, real Ceph daemons included. Installs first (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check ramburst tests scripts  # lint only (pyproject.toml [tool.ruff]); no format check
exec .venv/bin/python -m pytest -ra "$@"

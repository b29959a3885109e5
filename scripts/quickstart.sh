#!/usr/bin/env bash
# Install, then run the main job on the embedded default: deploy a RAM Ceph cluster on this
# host, push 4 MiB objects through its pool for a few seconds, read them back, tear down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$(pwd)/.venv/bin:$PATH"
exec ramburst run --name quickstart -- bash -c '
    set -e
    echo "== ramburst pool $RAMBURST_POOL: 4 MiB objects, 16 in flight, 1 GiB written then read =="
    rados -p "$RAMBURST_POOL" bench 5 write -b 4M -t 16 --max-objects 256 --no-cleanup | tail -n 18
    rados -p "$RAMBURST_POOL" bench 5 seq -t 16 | tail -n 14
    ramburst status --name quickstart'

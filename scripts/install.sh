#!/usr/bin/env bash
# Install everything ramburst needs, idempotently: Debian/Ubuntu packages (with sudo when
# not root), then a virtualenv at .venv in the checkout with ramburst and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(ceph-mon ceph-mgr ceph-osd ceph-mds radosgw ceph-fuse ceph-common python3-rados python3-cephfs libcephfs2
              python3-venv python3-dev iproute2 procps psmisc fuse3
              openmpi-bin libopenmpi-dev s3cmd fio rsync parallel   # rsync, parallel: the stage bench's peers
              slurm-wlm slurmctld slurmd slurm-client munge   # Slurm: the test cluster (tests/slurm.py)
              chromium)   # the dashboard's browser tests (Playwright drives it; no browser download)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: installing ${missing[*]}" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "install.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
        SUDO="sudo"
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The system python3: python3-rados is built for it, and ramburst loads that binding.
PY=/usr/bin/python3
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.base_prefix == "/usr" else 1)'; then
    rm -rf .venv
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test,mpi,arrays,codecs,bench-codecs,dashboard,stage]'
.venv/bin/python -c 'from ramburst.ceph.admin import load_rados; load_rados()' \
    || { echo "install.sh: the python rados binding does not load in .venv" >&2; exit 1; }
echo "install.sh: ready: $(pwd)/.venv/bin/ramburst" >&2

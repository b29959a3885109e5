#!/bin/bash
# Node Epilog (slurm.conf `Epilog=`; runs on every node as root after the job, also after a
# time-out or a cancel): remove this node's part of the job's instance. `down` works from the
# records in the user's state folder and touches only processes it started (checked by pid,
# start time and command line), so it is safe to run even if nothing was deployed.
# RAMBURST_STATE_ROOT / RAMBURST_VENV adapt it to a site (defaults: the user's
# ~/.local/state/ramburst and /opt/ramburst/.venv).
ROOT=${RAMBURST_STATE_ROOT:-$(getent passwd "$SLURM_JOB_USER" | cut -d: -f6)/.local/state/ramburst}
STATE=$ROOT/job$SLURM_JOB_ID
[ -d "$STATE" ] || exit 0
runuser -u "$SLURM_JOB_USER" -- "${RAMBURST_VENV:-/opt/ramburst/.venv}/bin/ramburst" down --state-dir "$STATE" || true

#!/bin/bash
#SBATCH --job-name=ramburst-example
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --time=01:00:00
##SBATCH --signal=B:TERM@120   # optional: stop and stage out 120 s before the limit
# A RAM Ceph cluster across the job's nodes for the job's lifetime: pool, S3 and a
# filesystem mounted at the same path on every node. Everything is removed at the end.
# On a time limit or `scancel`, Slurm sends SIGTERM to every process of the job: every
# `run` rank takes it, rank 0 gives CMD --grace seconds to stage out (the Ceph daemons ignore
# that SIGTERM, so the storage is still there), then all ranks unmount, stop the daemons and
# exit 143. Keep --grace plus ~5 s under the site's KillWait (`scontrol show config`), after
# which Slurm kills everything; for more time, uncomment the --signal line above (this shell
# then passes the early SIGTERM on to every rank).
# Tested on a real Slurm 22.05 (tests/test_slurm.py); the variables only adapt it to a site.
set -euo pipefail
export PATH=${RAMBURST_VENV:-$HOME/ramburst/.venv}/bin:$PATH   # where scripts/install.sh put ramburst
export RAMBURST_APP=${RAMBURST_APP:-my_app}                    # your program, run on every node

MOUNT=${RAMBURST_JOB_MOUNT:-/tmp/$USER-job$SLURM_JOB_ID}       # node-local path, same on every node
srun --mpi=pmix -N "$SLURM_NNODES" --ntasks-per-node=1 \
    ramburst run --mpi --interface "${RAMBURST_INTERFACE:-ib0}" --size "${RAMBURST_SIZE:-100G}" \
        --replicas "${RAMBURST_REPLICAS:-2}" --grace "${RAMBURST_GRACE:-20}" \
        --name "job$SLURM_JOB_ID" --service pool --service s3 --service fs --mount "$MOUNT" \
        -- bash -c '
            stage_out() { cp -r "$RAMBURST_MOUNT/results" "$SLURM_SUBMIT_DIR/"; }
            trap "stage_out; exit 143" TERM                              # time limit, scancel
            cp -r "$SLURM_SUBMIT_DIR/inputs" "$RAMBURST_MOUNT/"          # stage in
            mkdir -p "$RAMBURST_MOUNT/results"
            # every node sees the same files, pool and S3 endpoint; `& wait` lets the trap run at once
            srun --overlap -N "$SLURM_NNODES" --ntasks-per-node=1 $RAMBURST_APP "$RAMBURST_MOUNT" & wait $!
            code=$?
            stage_out
            exit $code
        ' &
# srun runs in the background so that a SIGTERM to this shell alone (--signal=B:...) is
# passed on at once, to every process of the job's steps (a SIGTERM to srun itself would
# make it kill the step at once). The job's exit code is srun's.
srun_pid=$!
trap 'scancel --signal=TERM "$SLURM_JOB_ID" 2>/dev/null || true' TERM
while :; do
    wait "$srun_pid" && code=0 || code=$?
    kill -0 "$srun_pid" 2>/dev/null || break                    # a trap interrupted the wait
done
exit "$code"
# Or, step by step:
#   srun ... ramburst up --mpi ...; srun ... my_app; srun ... ramburst down --mpi

#!/bin/bash
#SBATCH --job-name=ramburst-example
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --time=01:00:00
# A RAM Ceph cluster across the job's nodes for the job's lifetime: pool, S3 and a
# filesystem mounted at the same path on every node. Everything is removed at the end,
# also when the job hits its time limit (Slurm sends SIGTERM first: `run` tears down).
set -euo pipefail
export PATH=$HOME/ramburst/.venv/bin:$PATH          # where scripts/install.sh put ramburst

MOUNT=/tmp/$USER-job$SLURM_JOB_ID                      # node-local path, same on every node
srun --mpi=pmix -N "$SLURM_NNODES" --ntasks-per-node=1 \
    ramburst run --mpi --interface ib0 --size 100G --replicas 2 \
        --name "job$SLURM_JOB_ID" --service pool --service s3 --service fs --mount "$MOUNT" \
        -- bash -c '
            cp -r "$SLURM_SUBMIT_DIR/inputs" "$RAMBURST_MOUNT/"          # stage in
            srun --overlap -N "$SLURM_NNODES" my_app "$RAMBURST_MOUNT"   # every node sees the same files
            cp -r "$RAMBURST_MOUNT/results" "$SLURM_SUBMIT_DIR/"         # stage out
        '
# Or, step by step:
#   srun ... ramburst up --mpi ...; srun ... my_app; srun ... ramburst down --mpi

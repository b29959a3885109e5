#!/bin/bash
# Slurm PrologSlurmctld-style snippet (run once per job on the first node, as the job's user
# through `su`/`runuser`, with the job's node list): a site can offer ramburst to every job
# that asks for it with --comment=ramburst. The instance is named after the job.
[[ "${SLURM_JOB_COMMENT:-}" == *ramburst* ]] || exit 0
exec runuser -u "$SLURM_JOB_USER" -- \
    srun --jobid="$SLURM_JOB_ID" -N "$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --overlap \
    /opt/ramburst/.venv/bin/ramburst up --mpi --interface ib0 --size 64G \
        --name "job$SLURM_JOB_ID" --service pool --service fs --mount "/tmp/ramburst-$SLURM_JOB_ID"

#!/bin/bash
#$ -N ramburst-example
#$ -pe mpi 4            # a parallel environment with one slot per host (allocation_rule 1)
#$ -l h_rt=01:00:00
#$ -cwd
# Grid Engine: mpirun reads the hosts from $PE_HOSTFILE; one rank per host.
# Documented, not tested (no Grid Engine where ramburst is developed); see docs/multihost.md.
set -euo pipefail
export PATH=${RAMBURST_VENV:-$HOME/ramburst/.venv}/bin:$PATH
MOUNT=/tmp/$USER-job$JOB_ID
mpirun -np "$NHOSTS" --map-by ppr:1:node \
    ramburst up --mpi --interface "${RAMBURST_INTERFACE:-eth0}" --size "${RAMBURST_SIZE:-50G}" --name "job$JOB_ID" \
        --service pool --service fs --mount "$MOUNT"
mpirun -np "$NHOSTS" --map-by ppr:1:node my_app "$MOUNT"
mpirun -np "$NHOSTS" --map-by ppr:1:node ramburst down --mpi --name "job$JOB_ID"

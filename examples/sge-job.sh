#!/bin/bash
#$ -N ramburst-example
#$ -pe mpi 4            # a parallel environment with one slot per host (allocation_rule 1)
#$ -l h_rt=01:00:00
#$ -cwd
# Grid Engine: mpirun reads the hosts from $PE_HOSTFILE; one rank per host.
set -euo pipefail
export PATH=$HOME/ramburst/.venv/bin:$PATH
MOUNT=/tmp/$USER-job$JOB_ID
mpirun -np "$NHOSTS" --map-by ppr:1:node \
    ramburst up --mpi --interface eth0 --size 50G --name "job$JOB_ID" \
        --service pool --service fs --mount "$MOUNT"
mpirun -np "$NHOSTS" --map-by ppr:1:node my_app "$MOUNT"
mpirun -np "$NHOSTS" --map-by ppr:1:node ramburst down --mpi --name "job$JOB_ID"

#!/usr/bin/env bash
# Runs tests/mpi/collectives_mpi.cc under mpirun at several world sizes.
# Usage: bash collectives.sh BUILD_DIR SOURCE_DIR. Exit 77 (skipped) when mpirun or the
# program is missing, non-zero when any run fails or exceeds its time limit.
set -u
build_dir=${1:?usage: collectives.sh BUILD_DIR SOURCE_DIR}
program="$build_dir/tests/collectives_mpi"
if ! command -v mpirun >/dev/null; then
  echo "SKIP: mpirun not found (install openmpi-bin)"; exit 77
fi
if [[ ! -x "$program" ]]; then
  echo "SKIP: $program not built (cmake --build $build_dir --target collectives_mpi)"; exit 77
fi

export OMPI_MCA_rmaps_base_oversubscribe=1
# Shared memory without cross-memory attach, which containers often forbid.
export OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export PETARING_LOG=${PETARING_LOG:-warn}
flags=(--oversubscribe)
if [[ $(id -u) == 0 ]]; then flags+=(--allow-run-as-root); fi

status=0
for np in 1 2 3 4 6; do
  echo "== mpirun -np $np"
  if ! timeout --kill-after=5 120 mpirun "${flags[@]}" -np "$np" "$program"; then
    echo "FAIL: mpirun -np $np (exit status $?)"; status=1
  fi
done
echo "== mpirun -np 3 (rank 2 never calls the allreduce)"
if ! timeout --kill-after=5 120 mpirun "${flags[@]}" -np 3 "$program" --missing-rank; then
  echo "FAIL: missing-rank run"; status=1
fi
exit $status

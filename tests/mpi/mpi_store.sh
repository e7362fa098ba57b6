#!/usr/bin/env bash
# Runs tests/mpi/mpi_store.cc (the MPI-backed store) under mpirun at several world sizes.
# Usage: bash mpi_store.sh BUILD_DIR SOURCE_DIR. Exit 77 (skipped) when mpirun or the
# program is missing, non-zero when any run fails or exceeds its time limit.
set -u
build_dir=${1:?usage: mpi_store.sh BUILD_DIR SOURCE_DIR}
program="$build_dir/tests/mpi_store"
if ! command -v mpirun >/dev/null; then
  echo "SKIP: mpirun not found (install openmpi-bin)"; exit 77
fi
if [[ ! -x "$program" ]]; then
  echo "SKIP: $program not built (cmake --build $build_dir --target mpi_store)"; exit 77
fi
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none
flags=(--oversubscribe)
if [[ $(id -u) == 0 ]]; then flags+=(--allow-run-as-root); fi
status=0
for np in 1 2 4; do
  echo "== mpirun -np $np"
  if ! timeout --kill-after=5 120 mpirun "${flags[@]}" -np "$np" "$program"; then
    echo "FAIL: mpirun -np $np (exit status $?)"; status=1
  fi
done
exit $status

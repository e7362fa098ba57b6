#!/usr/bin/env bash
# The recipe's `collectives:` section reaches the ranks of an mpirun job: with
# `transport: tcp` the ranks talk over petaring's TCP transport (rank 0 logs the choice
# once), PETARING_TRANSPORT in the environment wins over the recipe, and without either
# the recipe's default (auto) picks shared memory for ranks on one host. A 5-step run of
# the small Fashion-MNIST recipe each time.
# Usage: bash recipe_transport.sh BUILD_DIR SOURCE_DIR. Exit 77 (skipped) without the data
# set or mpirun.
set -u
build_dir=${1:?usage: recipe_transport.sh BUILD_DIR SOURCE_DIR}
source_dir=${2:?usage: recipe_transport.sh BUILD_DIR SOURCE_DIR}
petaring="$build_dir/petaring"
if [[ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
  echo "SKIP: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"; exit 77
fi
if ! command -v mpirun >/dev/null; then echo "SKIP: mpirun not found"; exit 77; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_MCA_rmaps_base_oversubscribe=1
flags=(--oversubscribe)
if [[ $(id -u) == 0 ]]; then flags+=(--allow-run-as-root); fi
status=0
fail() { echo "FAIL: $*"; status=1; }

base="$work/base.yaml"
sed -e 's/max_steps: 100 /max_steps: 5 /' -e 's/evaluate: true/evaluate: false/' -e 's/threads: 0/threads: 1/' \
  "$source_dir/examples/recipes/fashion_mlp_small.yaml" >"$base"
grep -q "max_steps: 5 " "$base" || fail "could not shorten the recipe"
tcp="$work/tcp.yaml"
cp "$base" "$tcp"
printf 'collectives:\n  transport: tcp\n  timeout_s: 30\n' >>"$tcp"

# run NAME RECIPE [mpirun -x args...]: trains 2 ranks, keeps the output in $work/NAME.log.
run() {
  local name=$1 recipe=$2
  shift 2
  timeout 300 mpirun "${flags[@]}" "$@" -np 2 "$petaring" --log info train "$recipe" \
    >"$work/$name.log" 2>&1 || { fail "$name: mpirun exited $?"; cat "$work/$name.log"; }
}
# transport_of NAME: the transport rank 0 logged.
transport_of() { sed -n 's/.*collectives: using the \([a-z+]*\) transport.*/\1/p' "$work/$1.log" | head -1; }

echo "== the recipe asks for tcp"
run recipe "$tcp"
[[ $(transport_of recipe) == tcp ]] || fail "recipe: transport '$(transport_of recipe)', expected tcp"
grep -q "forced by PETARING_TRANSPORT or the recipe's collectives.transport" "$work/recipe.log" ||
  fail "recipe: the log does not say why"

echo "== PETARING_TRANSPORT=shm wins over the recipe"
PETARING_TRANSPORT=shm run environment "$tcp" -x PETARING_TRANSPORT
[[ $(transport_of environment) == shm ]] || fail "environment: transport '$(transport_of environment)', expected shm"

echo "== neither: auto, so shared memory on this one host"
run default "$base"
[[ $(transport_of default) == shm ]] || fail "default: transport '$(transport_of default)', expected shm"
grep -q "every rank on host" "$work/default.log" || fail "default: the log does not say why"

if [[ $status -eq 0 ]]; then echo "PASS"; fi
exit $status

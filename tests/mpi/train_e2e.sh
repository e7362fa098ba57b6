#!/usr/bin/env bash
# End to end: `petaring train` on the small Fashion-MNIST recipe, alone and as 2 ranks
# under mpirun; checks the exit codes, the final metrics record and that both runs
# learned something. Also checks that a bad recipe exits 2 with a file:line message.
# Usage: bash train_e2e.sh BUILD_DIR SOURCE_DIR. Exit 77 (skipped) without the data set.
set -u
build_dir=${1:?usage: train_e2e.sh BUILD_DIR SOURCE_DIR}
source_dir=${2:?usage: train_e2e.sh BUILD_DIR SOURCE_DIR}
petaring="$build_dir/petaring"
recipe="$source_dir/examples/recipes/fashion_mlp_small.yaml"
if [[ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
  echo "SKIP: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"; exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none
flags=(--oversubscribe)
if [[ $(id -u) == 0 ]]; then flags+=(--allow-run-as-root); fi
status=0
fail() { echo "FAIL: $*"; status=1; }

# $1: metrics file, $2: expected world size
check_final() {
  local final
  final=$(grep '"event":"final"' "$1") || { fail "$1 has no final record"; return; }
  for key in steps loss samples_per_s test_accuracy world_size comm_s comm_hidden_fraction; do
    grep -q "\"$key\":" <<<"$final" || fail "final record lacks $key: $final"
  done
  grep -q "\"world_size\":$2[,}]" <<<"$final" || fail "world_size is not $2: $final"
  grep -q '"steps":100[,}]' <<<"$final" || fail "steps is not 100: $final"
  local accuracy
  accuracy=$(grep -o '"test_accuracy":[0-9.]*' <<<"$final" | cut -d: -f2)
  # 100 steps of a 784-64-10 MLP reach ~0.75; chance is 0.10.
  awk -v a="$accuracy" 'BEGIN { exit !(a > 0.6) }' || fail "test accuracy $accuracy <= 0.6"
  [[ $(grep -c '"event":"step"' "$1") -eq 5 ]] || fail "expected 5 step records (log_every 20) in $1"
}

echo "== one rank, no mpirun"
timeout 300 "$petaring" --log warn train "$recipe" --metrics "$work/one.jsonl" || fail "single rank exited $?"
check_final "$work/one.jsonl" 1

echo "== two ranks under mpirun"
timeout 300 mpirun "${flags[@]}" -np 2 "$petaring" --log warn train "$recipe" \
  --metrics "$work/two.jsonl" || fail "mpirun -np 2 exited $?"
check_final "$work/two.jsonl" 2

echo "== petaring plot draws the two-rank run"
out=$("$petaring" plot "$work/two.jsonl" --out "$work/two.svg" 2>&1) || fail "plot exited $?: $out"
head -c 100 "$work/two.svg" | grep -q "<svg" || fail "$work/two.svg is not an SVG"
out=$("$petaring" plot "$work/two.jsonl" --out "$work/two.gif" 2>&1); code=$?
[[ $code -eq 2 ]] || fail "plot to .gif exited $code: $out"

echo "== a bad recipe exits 2 with file:line and path"
printf 'model:\n  type: mlp\n  layers: [784, 10]\noptimizer:\n  lr: -1\n' > "$work/bad.yaml"
out=$("$petaring" train "$work/bad.yaml" 2>&1); code=$?
[[ $code -eq 2 ]] || fail "bad recipe exited $code, expected 2: $out"
grep -q "bad.yaml:[0-9]*: " <<<"$out" || fail "no file:line in: $out"

echo "== an out-of-memory rank takes the job down instead of hanging"
out=$(timeout 120 mpirun "${flags[@]}" -np 2 "$petaring" --log warn train "$recipe" \
  --set devices.memory=1MiB --set "model.layers=[784,512,10]" 2>&1); code=$?
[[ $code -ne 0 && $code -ne 124 ]] || fail "out-of-memory job exited $code: $out"
grep -q "out of memory" <<<"$out" || fail "no out-of-memory message: $out"
grep -q "error on rank" <<<"$out" || fail "the message does not name the rank: $out"
echo "== petaring devices lists the virtual GPUs"
out=$("$petaring" devices --cpu-devices 3 --memory 1GiB --json 2>&1) || fail "devices exited $?: $out"
[[ $(grep -c '"name":"cpu:' <<<"$out") -eq 3 ]] || fail "expected 3 cpu devices: $out"
grep -q '"kind":"cpu"' <<<"$out" || fail "no kind in: $out"
out=$("$petaring" devices --memory lots 2>&1); code=$?
[[ $code -eq 2 ]] || fail "bad --memory exited $code: $out"
exit $status

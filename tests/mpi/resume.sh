#!/usr/bin/env bash
# Checkpoints end to end with `petaring train`: 2 ranks under mpirun write a checkpoint
# every 20 steps; a resume from step 40 (the newer ones removed, step 60 truncated) warns
# about the bad file by path, uses the previous one, and logs the same loss at every later
# step as the uninterrupted run, bit for bit; a resume of the 2-rank checkpoint at 1 rank
# says what changed and finishes.
# Usage: bash resume.sh BUILD_DIR SOURCE_DIR. Exit 77 (skipped) without the data set.
set -u
build_dir=${1:?usage: resume.sh BUILD_DIR SOURCE_DIR}
source_dir=${2:?usage: resume.sh BUILD_DIR SOURCE_DIR}
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
mpi=(mpirun --oversubscribe -np 2)
if [[ $(id -u) == 0 ]]; then mpi+=(--allow-run-as-root); fi
status=0
fail() { echo "FAIL: $*"; status=1; }
# AdamW with warmup and cosine decay: the optimizer state and the schedule must carry over.
sets=(--set training.log_every=1 --set optimizer.type=adamw --set optimizer.lr=0.002
      --set optimizer.momentum=0 --set optimizer.schedule=cosine --set optimizer.warmup_steps=10
      --set checkpoint.every=20 --set checkpoint.keep=5 --set training.evaluate=false)
# "step loss" per logged step of a metrics file
losses() { grep '"event":"step"' "$1" | sed -E 's/.*"loss":([^,}]*).*"step":([0-9]+).*/\2 \1/' | sort -n; }

echo "== uninterrupted, 2 ranks"
timeout 300 "${mpi[@]}" "$petaring" --log warn train "$recipe" "${sets[@]}" \
  --set checkpoint.dir="$work/ck" --metrics "$work/full.jsonl" > /dev/null || fail "full run exited $?"
ls "$work/ck"
[[ $(ls "$work/ck" | grep -c '^step-.*\.ckpt$') -eq 5 ]] || fail "expected 5 checkpoints (20..100)"
mkdir -p "$work/at40" && cp "$work/ck/step-00000040.ckpt" "$work/at40/"

echo "== resume after losing steps 80 and 100 and truncating 60"
rm "$work/ck/step-00000080.ckpt" "$work/ck/step-00000100.ckpt"
truncate -s 1000 "$work/ck/step-00000060.ckpt"
out=$(timeout 300 "${mpi[@]}" "$petaring" --log warn train "$recipe" "${sets[@]}" \
  --set checkpoint.dir="$work/ck" --metrics "$work/resumed.jsonl" --resume 2>&1) || fail "resume exited $?: $out"
grep -q "$work/ck/step-00000060.ckpt: .*truncated" <<<"$out" || fail "no warning naming the truncated file: $out"
grep -q "resumed from $work/ck/step-00000040.ckpt at step 40" <<<"$out" || fail "did not resume at 40: $out"
grep -q "nothing changed" <<<"$out" || fail "a same-size resume reported changes: $out"
expected=$(losses "$work/full.jsonl" | awk '$1 > 40')
got=$(losses "$work/resumed.jsonl")
[[ $(wc -l <<<"$got") -eq 60 ]] || fail "expected 60 resumed steps, got $(wc -l <<<"$got")"
[[ "$expected" == "$got" ]] || fail "losses after the resume differ: $(diff <(echo "$expected") <(echo "$got") | head -5)"

echo "== resume the 2-rank checkpoint at 1 rank (batch 128: the same global batch)"
out=$(timeout 300 "$petaring" --log warn train "$recipe" "${sets[@]}" --set training.batch_size=128 \
  --set checkpoint.dir="$work/one" --metrics "$work/one.jsonl" --resume "$work/at40" 2>&1) \
  || fail "1-rank resume exited $?: $out"
grep -q "changed: world size 2 -> 1" <<<"$out" || fail "world size change not reported: $out"
grep -q "training.batch_size 64 -> 128" <<<"$out" || fail "recipe change not reported: $out"
grep -q '"event":"final".*"steps":100[,}]' "$work/one.jsonl" || fail "1-rank resume did not finish 100 steps"
[[ -e "$work/one/step-00000100.ckpt" ]] || fail "no final checkpoint at 1 rank"
out=$("$petaring" --log warn train "$recipe" "${sets[@]}" --set checkpoint.dir="$work/one" --resume 2>&1) \
  || fail "resuming a finished run exited $?: $out"
grep -q "nothing left to train: the run is at step 100 of 100" <<<"$out" || fail "finished run not reported: $out"

echo "== --resume without a folder anywhere is a clear error"
out=$("$petaring" train "$recipe" --resume 2>&1); code=$?
[[ $code -eq 2 ]] || fail "--resume without a folder exited $code: $out"
grep -q "checkpoint.dir" <<<"$out" || fail "no hint in: $out"
exit $status

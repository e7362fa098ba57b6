#!/usr/bin/env bash
# Graceful preemption end to end with `petaring launch` (no MPI): a 2-rank training run
# gets SIGTERM on rank 1 only, mid-run; both ranks stop after the same step, rank 0 writes
# the checkpoint of that step, the preemption is logged with its path, and both ranks exit
# with code 75 (kPreemptedExitCode, trainer/train.h). `--resume` then finishes the run
# with the same loss at every later step, and the same final loss, as an uninterrupted
# run, bit for bit.
# Usage: bash preempt.sh BUILD_DIR SOURCE_DIR. Exit 77 (skipped) without the program or data.
set -u
build_dir=${1:?usage: preempt.sh BUILD_DIR SOURCE_DIR}
source_dir=${2:?usage: preempt.sh BUILD_DIR SOURCE_DIR}
petaring="$build_dir/petaring"
recipe="$source_dir/examples/recipes/fashion_mlp_small.yaml"
if [[ ! -x "$petaring" ]]; then echo "SKIP: $petaring not built"; exit 77; fi
if [[ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
  echo "SKIP: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"; exit 77
fi
work=$(mktemp -d)
launcher=
cleanup() { [[ -n "$launcher" ]] && kill -9 "$launcher" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
status=0
fail() { echo "FAIL: $*"; status=1; }
steps=2000  # long enough (seconds) that the signals land mid-run on a fast idle host
sets=(--set training.log_every=1 --set training.max_steps=$steps --set training.epochs=5 --set optimizer.type=adamw
      --set optimizer.lr=0.002 --set optimizer.momentum=0 --set optimizer.schedule=cosine
      --set optimizer.warmup_steps=10 --set checkpoint.every=1000 --set training.evaluate=false)
# "step loss" per logged step of a metrics file
losses() { grep '"event":"step"' "$1" | sed -E 's/.*"loss":([^,}]*).*"step":([0-9]+).*/\2 \1/' | sort -n; }
final_loss() { grep '"event":"final"' "$1" | sed -E 's/.*"loss":([^,}]*).*/\1/'; }

echo "== uninterrupted, 2 ranks"
timeout 120 "$petaring" launch -n 2 -- "$petaring" --log warn train "$recipe" "${sets[@]}" \
  --set checkpoint.dir="$work/full" --metrics "$work/full.jsonl" > /dev/null 2>&1 || fail "full run exited $?"

# Each rank runs under a shell that writes down its exit code (and ignores SIGTERM itself).
wrapper='trap "" TERM INT; "$@"; code=$?; echo $code > "$CODES/code-$PETARING_RANK"; exit $code'
# start NAME: a 2-rank run with checkpoints in $work/NAME, metrics $work/NAME.jsonl, log
# $work/NAME.log, rank codes $work/NAME/code-R; waits (bounded) for step 5 in rank 0's
# metrics, then sets $launcher and $rank1 (rank 1's petaring process).
start() {
  mkdir -p "$work/$1"
  CODES=$work/$1 "$petaring" launch -n 2 -- bash -c "$wrapper" rank "$petaring" --log warn train \
    "$recipe" "${sets[@]}" --set checkpoint.dir="$work/$1" --metrics "$work/$1.jsonl" > "$work/$1.log" 2>&1 &
  launcher=$!
  for _ in $(seq 1000); do
    grep -q '"step":5[,}]' "$work/$1.jsonl" 2>/dev/null && break
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.01
  done
  rank1=
  for shell in $(pgrep -P "$launcher"); do
    if tr '\0' '\n' < "/proc/$shell/environ" 2>/dev/null | grep -qx 'PETARING_RANK=1'; then
      rank1=$(pgrep -P "$shell")
    fi
  done
  [[ -n "$rank1" ]] || fail "$1: rank 1 not found among the launcher's children (did the run end early?)"
}

echo "== Ctrl-C: SIGINT twice to rank 1 at once, and to the launcher, which forwards it"
start int
if [[ -n "$rank1" ]]; then kill -INT "$rank1"; kill -INT "$rank1"; kill -INT "$launcher"; fi
wait "$launcher"; launcher=
for rank in 0 1; do
  [[ $(cat "$work/int/code-$rank" 2>/dev/null) == 75 ]] \
    || fail "Ctrl-C: rank $rank exited $(cat "$work/int/code-$rank" 2>/dev/null), not 75 (a repeated signal within 1 s must not kill it)"
done
grep -q "preempted at step [0-9]*; checkpoint $work/int/step-" "$work/int.log" || fail "Ctrl-C: no preemption line"

echo "== SIGTERM to rank 1 mid-run"
start ck
[[ -n "$rank1" ]] && kill -TERM "$rank1"
wait "$launcher"; code=$?; launcher=
mv "$work/ck.jsonl" "$work/cut.jsonl"; mv "$work/ck.log" "$work/cut.log"
[[ $code -eq 75 ]] || fail "the preempted launch exited $code, not 75: $(grep -v "^epoch" "$work/cut.log")"
for rank in 0 1; do
  [[ $(cat "$work/ck/code-$rank" 2>/dev/null) == 75 ]] || fail "rank $rank exited $(cat "$work/ck/code-$rank" 2>/dev/null), not 75"
done
step=$(grep '"event":"preempted"' "$work/cut.jsonl" | sed -E 's/.*"step":([0-9]+).*/\1/')
[[ -n "$step" ]] || fail "no preempted event in the metrics"
step=${step:-0}
[[ $step -ge 5 && $step -lt $steps ]] || fail "preempted at step $step, expected 5..$((steps - 1))"
path=$(printf '%s/ck/step-%08d.ckpt' "$work" "$step")
[[ -e "$path" ]] || fail "no checkpoint at the agreed step: $(ls "$work/ck")"
grep -q "preempted at step $step; checkpoint $path; resume with --resume" "$work/cut.log" \
  || fail "no preemption line naming $path: $(grep -v "^epoch" "$work/cut.log")"
[[ $(losses "$work/cut.jsonl" | tail -1 | cut -d' ' -f1) == "$step" ]] || fail "steps logged past the agreed step $step"

echo "== resume from step $step"
timeout 120 "$petaring" launch -n 2 -- "$petaring" --log warn train "$recipe" "${sets[@]}" \
  --set checkpoint.dir="$work/ck" --metrics "$work/resumed.jsonl" --resume > "$work/resume.log" 2>&1 \
  || fail "resume exited $?: $(tail -5 "$work/resume.log")"
grep -q "resumed from $path at step $step" "$work/resume.log" || fail "did not resume at $step: $(grep -v "^epoch" "$work/resume.log")"
expected=$(losses "$work/full.jsonl" | awk -v s="$step" '$1 > s')
got=$(losses "$work/resumed.jsonl")
[[ $(wc -l <<<"$got") -eq $((steps - step)) ]] || fail "expected $((steps - step)) resumed steps, got $(wc -l <<<"$got")"
[[ "$expected" == "$got" ]] || fail "losses after the resume differ: $(diff <(echo "$expected") <(echo "$got") | head -5)"
full=$(final_loss "$work/full.jsonl"); resumed=$(final_loss "$work/resumed.jsonl")
[[ -n "$full" && "$full" == "$resumed" ]] || fail "final loss $resumed after the resume, $full uninterrupted"
exit $status

#!/usr/bin/env bash
# Pool faults on loopback, with real processes: a coordinator and three workers with two
# virtual GPUs each (heartbeat timeout 3 s).
#  1. A job asking for more GPUs than the pool has waits, saying how many it needs and
#     how many exist.
#  2. Job A (3 GPUs: two on one worker, one on another) and job B (2 GPUs) run; once A
#     has written a checkpoint, the worker holding two of A's ranks is killed with -9. A's surviving rank
#     fails fast, the coordinator restarts A from its checkpoint on the remaining
#     capacity, and A finishes with the same final loss as an uninterrupted 3-rank run
#     (`petaring launch -n 3`, TCP transport).
# Each worker has a working folder of its own (as on three hosts); checkpoints go to the
# folder the coordinator hands the job under --shared-dir.
# Usage: bash pool_faults.sh BUILD_DIR SOURCE_DIR. Exit 77 when petaring, python3 or the
# Fashion-MNIST files are missing.
set -u
build_dir=${1:?usage: pool_faults.sh BUILD_DIR SOURCE_DIR}
source_dir=${2:?usage: pool_faults.sh BUILD_DIR SOURCE_DIR}
needs_pgrep=1
separate_workdirs=1
source "$source_dir/tests/mpi/pool_common.bash"
recipe="$work/long.yaml"
sed -e 's/max_steps: 100 /max_steps: 400 /' -e 's/evaluate: true/evaluate: false/' -e 's/threads: 0/threads: 1/' \
  "$source_dir/examples/recipes/fashion_mlp_small.yaml" >"$recipe"
printf 'checkpoint:\n  dir: ckpt\n  every: 25\n' >>"$recipe"  # relative: the coordinator names the folder

start_coordinator 127.0.0.1:0 --heartbeat-timeout-ms 3000 --shared-dir "$work/shared" || exit 1  # 1 s proved too short on a loaded host
for w in w1 w2 w3; do start_worker "$w" cpu:2; done
wait_for 20 "three nodes" bash -c "[[ \$('$petaring' nodes --json | grep -c alive) == 3 ]]"

# 1. Too big for the pool.
submit() { "$petaring" submit "$recipe" --json "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
big=$(submit --gpus 7) || { fail "submit"; exit 1; }
"$petaring" job "$big" --json | grep -q '"reason":"needs 7 GPUs; the pool has 6 such GPUs lent' ||
  fail "job $big should wait with 'needs 7 GPUs; the pool has 6 such GPUs lent': $("$petaring" job "$big" --json)"

# 2. Kill the worker holding two of A's ranks once A has a checkpoint.
a=$(submit --gpus 3 --tenant alice) && b=$(submit --gpus 2 --tenant bob) || { fail "submit"; exit 1; }
placement=$("$petaring" job "$a" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["placement"])')
# Packed: two ranks on one worker ($double), one on another ($single).
read -r double single < <(python3 -c '
import collections, sys
count = collections.Counter(slot.split(":")[0] for slot in sys.argv[1].split(","))
print(*[n for n, _ in sorted(count.items(), key=lambda kv: -kv[1])])' "$placement")
[[ -n $double && -n $single && $placement == *"$double"*"$double"* ]] ||
  { fail "job $a placed on '$placement', expected two ranks on one node and one on another"; exit 1; }
single_rank=$(python3 -c 'import sys; print([s.split(":")[0] for s in sys.argv[1].split(",")].index(sys.argv[2]))' "$placement" "$single")
# The kill must land mid-run, also on a loaded host: watch for the first checkpoint with
# shell builtins (no process per poll), then freeze job A's ranks at once (SIGSTOP: no
# step can pass), kill the worker (its ranks die with it), and let the survivor go on.
deadline=$((SECONDS + 60))
until compgen -G "$work/shared/job-$a/checkpoints/*.ckpt" >/dev/null; do
  ((SECONDS < deadline)) || { fail "timed out waiting for a checkpoint of job $a"; exit 1; }
  sleep 0.01
done
victim="worker_$double" survivor="worker_$single"
frozen=$(pgrep -P "${!victim}"; pgrep -P "${!survivor}")
kill -STOP $frozen
kill -9 "${!victim}"
kill -CONT $frozen 2>/dev/null
grep -q "^final:" "$work"/jobs-*/job-"$a"/rank-0.attempt-1.log && fail "job $a finished before the kill; the test proves nothing"
killed_at=$SECONDS
wait_for 60 "job $a to restart" bash -c "[[ \$('$petaring' job $a --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"attempt\"])') -ge 2 ]]" || exit 1
wait_for 120 "job $b to finish" job_is "$b" finished
wait_for 120 "job $a to finish" job_is "$a" finished
grep -q "resumed from $work/shared/job-$a/checkpoints/" "$work"/jobs-*/job-"$a"/rank-0.attempt-[2-9].log ||
  fail "job $a did not resume from a checkpoint in the shared folder"
# The surviving rank did not hang: it failed on its own, naming the lost peer.
grep -q "error on rank $single_rank" "$work/jobs-$single/job-$a/rank-$single_rank.attempt-1.log" ||
  fail "job $a's rank $single_rank on $single did not fail by itself"

# The same recipe, uninterrupted, 3 ranks over TCP.
PETARING_TRANSPORT=tcp timeout 120 "$petaring" launch -n 3 -- "$petaring" train "$recipe" \
  --set checkpoint.every=0 --set checkpoint.dir="$work/reference-ckpt" --metrics "$work/reference.jsonl" >"$work/reference.log" 2>&1 || fail "reference run"
python3 - "$work/reference.jsonl" "$work"/jobs-*/job-"$a"/metrics.attempt-*.jsonl <<'PY' || fail "final losses differ"
import json, sys
def final(path):
    records = [json.loads(l) for l in open(path) if l.strip()]
    finals = [r for r in records if r.get("event") == "final"]
    return finals[-1] if finals else None
reference = final(sys.argv[1])
pool = [f for f in map(final, sys.argv[2:]) if f]
assert reference and pool, (reference, pool)
print("reference loss", reference["loss"], "pool loss", pool[-1]["loss"], "steps", pool[-1]["steps"])
assert pool[-1]["loss"] == reference["loss"], (pool[-1], reference)
PY
"$petaring" ledger --json | grep -q '"tenant":"alice"' || fail "no ledger row for alice"
# The killed worker is marked dead once its heartbeats have been missing for the
# timeout; the job may finish before that, so wait for it (well past the 3 s timeout).
wait_for 30 "$double to be marked dead" bash -c "'$petaring' nodes --json | grep '\"name\":\"$double\"' | grep -q '\"state\":\"dead\"'" || true
if ((status != 0)); then
  tail -n 30 "$work/coordinator.log"; tail -n 5 "$work"/jobs-*/job-"$a"/*.log
else
  echo "PASS"
fi
exit $status

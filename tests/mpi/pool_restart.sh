#!/usr/bin/env bash
# A pool coordinator killed with -9 and restarted on the same state file: every submitted
# job and every ledger row is still there (compared as JSON before and after), the worker
# reconnects by itself, and a job submitted before the kill still runs to the end.
# Usage: bash pool_restart.sh BUILD_DIR SOURCE_DIR. Exit 77 when petaring, python3 or the
# Fashion-MNIST files are missing.
set -u
build_dir=${1:?usage: pool_restart.sh BUILD_DIR SOURCE_DIR}
source_dir=${2:?usage: pool_restart.sh BUILD_DIR SOURCE_DIR}
source "$source_dir/tests/mpi/pool_common.bash"
recipe="$work/short.yaml"
sed -e 's/max_steps: 100 /max_steps: 20 /' -e 's/evaluate: true/evaluate: false/' -e 's/threads: 0/threads: 1/' \
  "$source_dir/examples/recipes/fashion_mlp_small.yaml" >"$recipe"

start_coordinator 127.0.0.1:0 --heartbeat-timeout-ms 3000 || exit 1
address=$PETARING_COORDINATOR
start_worker w1 cpu:1
"$petaring" submit "$recipe" --tenant alice >/dev/null || fail "submit 1"
wait_for 60 "job 1 to finish" job_is 1 finished
for i in 2 3 4; do "$petaring" submit "$recipe" --gpus 2 --tenant bob >/dev/null || fail "submit $i"; done
"$petaring" submit "$recipe" --tenant carol >/dev/null || fail "submit 5"
# What a restart must keep of each job. Not the attempt: the job running when the
# coordinator died may already be on its next attempt when the list is read again (its
# rank lost the coordinator, and the worker can reconnect within milliseconds).
list_jobs() {
  "$petaring" jobs --json | python3 -c 'import json,sys; [print(json.dumps({k:j[k] for k in ("id","name","tenant","gpus","submitted_ms")}) + "\t" + str(j["attempt"])) for j in map(json.loads, sys.stdin)]'
}
list_jobs >"$work/jobs-before"
"$petaring" ledger --json >"$work/ledger-before"
[[ $(wc -l <"$work/jobs-before") == 5 ]] || fail "expected 5 jobs before the kill"
[[ -s "$work/ledger-before" ]] || fail "no ledger row before the kill"

kill -9 "$coordinator_pid"
wait "$coordinator_pid" 2>/dev/null
start_coordinator "$address" --heartbeat-timeout-ms 3000 || exit 1
list_jobs >"$work/jobs-after"
"$petaring" ledger --json >"$work/ledger-after"
cmp -s <(cut -f1 "$work/jobs-before") <(cut -f1 "$work/jobs-after") ||
  { fail "jobs differ after the restart"; diff "$work/jobs-before" "$work/jobs-after"; }
# ... and no attempt number went backwards.
paste -d' ' <(cut -f2 "$work/jobs-before") <(cut -f2 "$work/jobs-after") |
  awk '$2 < $1 {bad = 1} END {exit bad}' || fail "an attempt number went backwards after the restart"
# Every row is still there, unchanged; job 5 may have ended since, adding its own.
head -n "$(wc -l <"$work/ledger-before")" "$work/ledger-after" | cmp -s "$work/ledger-before" - ||
  { fail "ledger rows lost or changed by the restart"; diff "$work/ledger-before" "$work/ledger-after"; }
# The worker comes back on its own; job 5 (1 GPU) runs; jobs 2-4 wait for 2 GPUs.
wait_for 60 "job 5 to finish after the restart" job_is 5 finished
"$petaring" job 2 --json | grep -q '"needs 2 GPUs; the pool has 1 such GPU lent' || fail "job 2 should wait for 2 GPUs"
if ((status != 0)); then tail -n 20 "$work/coordinator.log" "$work/worker-w1.log"; else echo "PASS"; fi
exit $status

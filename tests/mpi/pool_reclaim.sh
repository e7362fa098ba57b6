#!/usr/bin/env bash
# `petaring worker reclaim`: an owner takes a node back mid-job. The node's worker stops
# its ranks and leaves the pool by itself (exit 0), the node shows as reclaimed, and the
# job resumes from its checkpoint on the other worker and finishes. The two workers have
# working folders of their own (as on two hosts); the job's checkpoints are in the folder
# the coordinator hands it under --shared-dir, which is how the other worker finds them.
# Usage: bash pool_reclaim.sh BUILD_DIR SOURCE_DIR. Exit 77 when petaring, python3 or the
# Fashion-MNIST files are missing.
set -u
build_dir=${1:?usage: pool_reclaim.sh BUILD_DIR SOURCE_DIR}
source_dir=${2:?usage: pool_reclaim.sh BUILD_DIR SOURCE_DIR}
separate_workdirs=1
source "$source_dir/tests/mpi/pool_common.bash"
recipe="$work/long.yaml"
sed -e 's/max_steps: 100 /max_steps: 400 /' -e 's/evaluate: true/evaluate: false/' -e 's/threads: 0/threads: 1/' \
  "$source_dir/examples/recipes/fashion_mlp_small.yaml" >"$recipe"
printf 'checkpoint:\n  dir: ckpt\n  every: 50\n' >>"$recipe"

start_coordinator 127.0.0.1:0 --heartbeat-timeout-ms 2000 --shared-dir "$work/shared" || exit 1
for w in w1 w2; do start_worker "$w" cpu:2; done
wait_for 20 "two nodes" bash -c "[[ \$('$petaring' nodes --json | grep -c alive) == 2 ]]" || exit 1
"$petaring" submit "$recipe" --gpus 2 >/dev/null || { fail "submit"; exit 1; }
holder=$("$petaring" job 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["placement"].split(":")[0])')
other=w1; [[ $holder == w1 ]] && other=w2
wait_for 60 "a checkpoint of job 1" bash -c "ls '$work/shared/job-1/checkpoints/' | grep -q '[.]ckpt$'" || exit 1
[[ -d $work/jobs-$holder/job-1 && ! -e $work/jobs-$holder/job-1/checkpoints ]] || fail "checkpoints not only in the shared folder"
"$petaring" worker reclaim --node "$holder" | grep -q "node $holder reclaimed" || fail "reclaim did not confirm"
holder_pid="worker_$holder"
wait_for 30 "worker $holder to leave" bash -c "! kill -0 ${!holder_pid} 2>/dev/null"
wait "${!holder_pid}"; code=$?
((code == 0)) || fail "worker $holder exited with $code after the reclaim, expected 0"
"$petaring" nodes --json | grep "\"name\":\"$holder\"" | grep -q '"state":"reclaimed"' || fail "$holder not shown as reclaimed"
wait_for 60 "job 1 to finish" job_is 1 finished
"$petaring" job 1 --json | grep -q "\"placement\":\"\"" || fail "finished job still placed"
grep -q "resumed from $work/shared/job-1/checkpoints/" "$work/jobs-$other/job-1/rank-0.attempt-2.log" ||
  fail "attempt 2 on $other did not resume from a checkpoint in the shared folder"
grep -q "reclaimed by its owner" "$work/worker-$holder.log" || fail "worker $holder did not log the reclaim"
if ((status != 0)); then tail -n 20 "$work/coordinator.log" "$work/worker-$holder.log"; else echo "PASS"; fi
exit $status

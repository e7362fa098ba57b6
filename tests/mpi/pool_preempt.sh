#!/usr/bin/env bash
# A pool job's ranks preempted on their host (SIGTERM to the trainer, as a host shutting
# down sends it): the trainer checkpoints and exits 75, and the coordinator re-places the
# job without counting a failure. The coordinator allows a single failed attempt
# (--max-attempts 1), so the job runs again only if the preemption was not counted as
# one; the second attempt resumes from the preemption's checkpoint (then it is cancelled:
# the recipe is long, so that the signal always lands mid-run).
# Usage: bash pool_preempt.sh BUILD_DIR SOURCE_DIR. Exit 77 when petaring, python3, pgrep
# or the Fashion-MNIST files are missing.
set -u
build_dir=${1:?usage: pool_preempt.sh BUILD_DIR SOURCE_DIR}
source_dir=${2:?usage: pool_preempt.sh BUILD_DIR SOURCE_DIR}
needs_pgrep=1
source "$source_dir/tests/mpi/pool_common.bash"
recipe="$work/long.yaml"
sed -e 's/max_steps: 100 /max_steps: 50000 /' -e 's/epochs: 1/epochs: 200/' -e 's/evaluate: true/evaluate: false/' -e 's/threads: 0/threads: 1/' \
  "$source_dir/examples/recipes/fashion_mlp_small.yaml" >"$recipe"
printf 'checkpoint:\n  dir: ckpt\n  every: 10000\n' >>"$recipe"

start_coordinator 127.0.0.1:0 --heartbeat-timeout-ms 3000 --max-attempts 1 || exit 1
start_worker w1 cpu:2
"$petaring" submit "$recipe" --gpus 2 >/dev/null || { fail "submit"; exit 1; }
# Both ranks have started training (rank 0 writes its metrics once a step is done).
wait_for 60 "job 1 to train" bash -c "ls '$work'/jobs/job-1/metrics.attempt-1.jsonl >/dev/null && [[ \$(pgrep -c -P $worker_w1) == 2 ]]" || exit 1
ranks=$(pgrep -P "$worker_w1")
kill -TERM $ranks
wait_for 60 "job 1 attempt 2" bash -c "'$petaring' job 1 --json | grep -q '\"attempt\":2'" || exit 1
wait_for 60 "attempt 2 to resume" grep -q "resumed from" "$work"/jobs/job-1/rank-0.attempt-2.log
state=$(job_state 1)
[[ $state == running || $state == finished ]] || fail "job 1 is $state after a preemption, expected running (not a failed attempt)"
grep -q "was preempted (exit 75) after a checkpoint" "$work/coordinator.log" || fail "the preemption is not the reason of the restart"
grep -q "preempted at step" "$work"/jobs/job-1/rank-0.attempt-1.log || fail "attempt 1 was not preempted by the trainer"
[[ $state == running ]] && "$petaring" cancel 1 >/dev/null
grep -q "preempted after a checkpoint" "$work/worker-w1.log" || fail "the worker did not log the preemption"
if ((status != 0)); then tail -n 20 "$work/coordinator.log" "$work/worker-w1.log"; else echo "PASS"; fi
exit $status

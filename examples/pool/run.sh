#!/usr/bin/env bash
# A pool on this host: a coordinator and three workers lending two virtual GPUs each,
# two jobs (3 GPUs and 2 GPUs), `jobs` and `nodes`, then one worker killed with -9
# mid-job; the coordinator notices, restarts what ran there from its last checkpoint on
# the remaining GPUs, and both jobs finish.
#
#   examples/pool/run.sh [PETARING]      (default: build/petaring)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
petaring=${1:-$here/../../build/petaring}
work=$(mktemp -d /tmp/petaring-pool.XXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; echo "(logs and job folders are in $work)"' EXIT

head -c 32 /dev/urandom | base64 >"$work/secret"     # the pool secret, shared by all
export PETARING_SECRET_FILE="$work/secret"
"$petaring" coordinator --listen 127.0.0.1:0 --address-file "$work/address" \
  --state "$work/pool.db" --secret-file "$work/secret" --heartbeat-timeout-ms 2000 \
  --shared-dir "$work/shared" 2>"$work/coordinator.log" &
pids+=($!)
until [[ -s "$work/address" ]]; do sleep 0.1; done
export PETARING_COORDINATOR=$(cat "$work/address")
echo "coordinator at $PETARING_COORDINATOR"
declare -A worker
for name in alpha beta gamma; do
  "$petaring" worker --name "$name" --devices cpu:2 --workdir "$work/jobs-$name" --heartbeat-ms 250 \
    2>"$work/worker-$name.log" &
  worker[$name]=$!
  pids+=($!)
done
until [[ $("$petaring" nodes --json | grep -c '"alive"') == 3 ]]; do sleep 0.1; done

echo; echo "\$ petaring submit sgd.yaml --gpus 3 --tenant alice"
"$petaring" submit "$here/sgd.yaml" --gpus 3 --tenant alice
echo "\$ petaring submit adamw.yaml --gpus 2 --tenant bob"
"$petaring" submit "$here/adamw.yaml" --gpus 2 --tenant bob
echo; echo "\$ petaring jobs"; "$petaring" jobs
echo; echo "\$ petaring nodes"; "$petaring" nodes

# Kill the node holding most of job 1's ranks once the job has a checkpoint.
until ls "$work/shared/job-1/checkpoints" 2>/dev/null | grep -q '[.]ckpt$'; do sleep 0.1; done
victim=$("$petaring" job 1 --json | python3 -c '
import collections, json, sys
slots = json.load(sys.stdin)["placement"].split(",")
print(collections.Counter(s.split(":")[0] for s in slots).most_common(1)[0][0])')
echo; echo "--- kill -9 the worker of node $victim ---"
kill -9 "${worker[$victim]}"
wait "${worker[$victim]}" 2>/dev/null || true
sleep 3
echo "\$ petaring nodes"; "$petaring" nodes
echo; echo "\$ petaring jobs"; "$petaring" jobs

until "$petaring" jobs --json | python3 -c '
import json, sys
sys.exit(0 if all(json.loads(l)["state"] in ("finished", "failed") for l in sys.stdin) else 1)'; do
  sleep 0.5
done
echo; echo "\$ petaring jobs"; "$petaring" jobs
echo; echo "\$ petaring ledger"; "$petaring" ledger

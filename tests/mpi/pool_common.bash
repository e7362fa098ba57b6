# Helpers for the pool tests (tests/mpi/pool_*.sh); sourced, not run, after the script
# has set $build_dir and $source_dir (and $needs_pgrep=1 when it uses pgrep,
# $separate_workdirs=1 for a working folder per worker). Exits 77 (skip) when petaring,
# python3, pgrep (if needed) or the Fashion-MNIST files are missing; defines $petaring,
# $work (removed on exit), $secret and the PETARING_* client variables.
petaring="$build_dir/petaring"
if [[ ! -x "$petaring" ]]; then echo "SKIP: $petaring not built"; exit 77; fi
if ! command -v python3 >/dev/null; then echo "SKIP: python3 not found"; exit 77; fi
if [[ -n ${needs_pgrep:-} ]] && ! command -v pgrep >/dev/null; then echo "SKIP: pgrep not found"; exit 77; fi
if [[ ! -d /usr/share/datasets/fashion-mnist ]]; then echo "SKIP: no Fashion-MNIST data"; exit 77; fi
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
status=0
fail() { echo "FAIL: $*"; status=1; }

secret="$work/secret"
head -c 32 /dev/urandom | base64 >"$secret"
export PETARING_SECRET_FILE="$secret"

# start_coordinator LISTEN [args...]: starts it, waits for its address, sets $coordinator_pid
# and PETARING_COORDINATOR.
start_coordinator() {
  local listen=$1; shift
  rm -f "$work/address"
  "$petaring" coordinator --listen "$listen" --state "$work/state.db" --secret-file "$secret" \
    --address-file "$work/address" "$@" 2>>"$work/coordinator.log" &
  coordinator_pid=$!
  pids+=("$coordinator_pid")
  wait_for 20 "coordinator address" test -s "$work/address" || return 1
  export PETARING_COORDINATOR=$(cat "$work/address")
}

# workdir_of NAME: the worker's --workdir: $work/jobs, or $work/jobs-NAME when the script
# set separate_workdirs=1 (hosts that share no folder but the coordinator's --shared-dir).
workdir_of() { if [[ -n ${separate_workdirs:-} ]]; then echo "$work/jobs-$1"; else echo "$work/jobs"; fi; }

# start_worker NAME DEVICES [args...]
start_worker() {
  local name=$1 devices=$2; shift 2
  "$petaring" worker --name "$name" --devices "$devices" --workdir "$(workdir_of "$name")" --heartbeat-ms 100 "$@" \
    2>>"$work/worker-$name.log" &
  pids+=("$!")
  eval "worker_$name=$!"
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds or time runs out.
wait_for() {
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then fail "timed out waiting for $what"; return 1; fi
    sleep 0.05
  done
}

# job_state ID: prints the job's state.
job_state() { "$petaring" job "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
job_is() { [[ $(job_state "$1") == "$2" ]]; }

#!/usr/bin/env bash
# Faults with real processes on loopback, under `petaring launch` (no MPI), for each of
# the tcp and shm transports:
#   1. three ranks run an allreduce loop (collectives_fault loop); rank 1 is killed with
#      SIGKILL mid-loop. Ranks 0 and 2 must each fail with an error naming rank 1 and its
#      host, well within PETARING_COLLECTIVE_TIMEOUT, and exit non-zero (the launcher too);
#      the program ignores SIGTERM, so each survivor's own error is what stops it.
#   2. three ranks make a mismatched allreduce: every rank fails with the signature error
#      naming both ranks and both calls.
# Usage: bash collectives_fault.sh BUILD_DIR SOURCE_DIR. Exit 77 (skipped) when petaring or
# the driver program is missing.
set -u
build_dir=${1:?usage: collectives_fault.sh BUILD_DIR SOURCE_DIR}
petaring="$build_dir/petaring"
driver="$build_dir/tests/collectives_fault"
for program in "$petaring" "$driver"; do
  if [[ ! -x "$program" ]]; then echo "SKIP: $program not built"; exit 77; fi
done
work=$(mktemp -d)
launcher=
cleanup() { [[ -n "$launcher" ]] && kill -9 "$launcher" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
status=0
fail() { echo "FAIL: $*"; status=1; }
host=$(hostname)
timeout_s=20

# The pid of the launcher's child whose environment says PETARING_RANK=$2.
rank_pid() {
  local pid
  for pid in $(pgrep -P "$1"); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "PETARING_RANK=$2"; then
      echo "$pid"; return
    fi
  done
}

for transport in tcp shm; do
  log="$work/kill-$transport.log"
  PETARING_TRANSPORT=$transport PETARING_COLLECTIVE_TIMEOUT=$timeout_s \
    "$petaring" launch -n 3 --grace 120 -- "$driver" loop >"$log" 2>&1 &
  launcher=$!
  ready=
  for _ in $(seq 1 600); do  # rank 0 finished an iteration: at most 60 s
    grep -q '^READY' "$log" && { ready=1; break; }
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.1
  done
  victim=$(rank_pid "$launcher" 1)
  if [[ -z "$ready" || -z "$victim" ]]; then
    fail "$transport: the loop did not start"; tail -20 "$log"; kill -9 "$launcher"; launcher=; continue
  fi
  kill -9 "$victim"
  killed=$(date +%s%N)
  code=
  for _ in $(seq 1 $(( (timeout_s + 10) * 10 ))); do
    if ! kill -0 "$launcher" 2>/dev/null; then wait "$launcher"; code=$?; break; fi
    sleep 0.1
  done
  elapsed_ms=$(( ($(date +%s%N) - killed) / 1000000 ))
  if [[ -z "$code" ]]; then
    fail "$transport: launch still running $((timeout_s + 10)) s after rank 1 was killed (a hang)"
    tail -20 "$log"; kill -9 "$launcher"; pkill -9 -P "$launcher" 2>/dev/null
  else
    [[ "$code" != 0 ]] || fail "$transport: launch exited 0 after rank 1 was killed"
    for survivor in 0 2; do
      line=$(grep "^rank $survivor FAILED" "$log" | head -1)
      if [[ -z "$line" ]]; then
        fail "$transport: rank $survivor reported no error"; tail -20 "$log"; continue
      fi
      [[ "$line" == *"rank 1 "* && "$line" == *"host $host"* ]] ||
        fail "$transport: rank $survivor's error does not name rank 1 and host $host: $line"
    done
    grep -q "rank 1 (pid $victim) was killed by signal 9" "$log" ||
      fail "$transport: the launcher did not name the killed rank 1"
    echo "$transport: killed rank 1; both survivors failed naming it; launch exited $code ${elapsed_ms} ms after the kill"
    (( elapsed_ms < timeout_s * 1000 )) ||
      fail "$transport: survivors took ${elapsed_ms} ms, not within the $timeout_s s timeout"
  fi
  launcher=

  log="$work/mismatch-$transport.log"
  PETARING_TRANSPORT=$transport PETARING_COLLECTIVE_TIMEOUT=$timeout_s \
    timeout 60 "$petaring" launch -n 3 --grace 30 -- "$driver" mismatch >"$log" 2>&1
  code=$?
  [[ $code != 0 && $code != 124 ]] || fail "$transport: mismatch run exited $code"
  for rank in 0 1 2; do
    line=$(grep "^rank $rank FAILED" "$log" | head -1)
    [[ "$line" == *"ranks disagree on collective call #"*"rank 0 called allreduce #"*"(count 10"*"rank 2 called allreduce #"*"(count 11"* ]] ||
      { fail "$transport: rank $rank did not report the mismatch naming ranks 0 and 2: $line"; tail -5 "$log"; }
  done
done

[[ $status == 0 ]] && echo "PASS"
exit $status

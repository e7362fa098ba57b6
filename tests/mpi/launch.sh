#!/usr/bin/env bash
# `petaring launch` (no MPI): 2-rank training runs over each transport
# (PETARING_TRANSPORT=shm and =tcp) whose final metrics record says "world_size":2; a
# checked allreduce bench with the automatic choice (shm: every rank is on this host); a
# 3-rank run where one rank is killed with SIGKILL, after which the launcher must stop the
# others and exit non-zero within the timeout, naming the dead rank, with no shared-memory
# segment left in /dev/shm; and bad launch flags exiting 2.
# Usage: bash launch.sh BUILD_DIR SOURCE_DIR. Exit 77 (skipped) when the petaring program,
# python3 or the Fashion-MNIST files are missing.
set -u
build_dir=${1:?usage: launch.sh BUILD_DIR SOURCE_DIR}
source_dir=${2:?usage: launch.sh BUILD_DIR SOURCE_DIR}
petaring="$build_dir/petaring"
recipe="$source_dir/examples/recipes/fashion_mlp_small.yaml"
if [[ ! -x "$petaring" ]]; then echo "SKIP: $petaring not built"; exit 77; fi
if ! command -v python3 >/dev/null; then echo "SKIP: python3 not found"; exit 77; fi
if [[ ! -d /usr/share/datasets/fashion-mnist ]]; then echo "SKIP: no Fashion-MNIST data"; exit 77; fi
work=$(mktemp -d)
launcher=
cleanup() { [[ -n "$launcher" ]] && kill -9 "$launcher" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
status=0
fail() { echo "FAIL: $*"; status=1; }

# 1. Two ranks train over each transport; rank 0 writes the metrics.
shm_before=$(ls /dev/shm 2>/dev/null | grep '^petaring-')
for transport in shm tcp; do
  if ! PETARING_TRANSPORT=$transport timeout 120 "$petaring" launch -n 2 -- "$petaring" train \
       "$recipe" --metrics "$work/metrics-$transport.jsonl" >"$work/train-$transport.log" 2>&1; then
    fail "launch -n 2 train ($transport) exited non-zero"; tail -20 "$work/train-$transport.log"
  fi
  python3 - "$work/metrics-$transport.jsonl" <<'PY' || fail "final metrics record ($transport)"
import json, sys
records = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
final = records[-1]
assert final.get("event") == "final", final
assert final.get("world_size") == 2, final
PY
  grep -q "over the $transport transport" "$work/train-$transport.log" ||
    fail "rank 0 did not log the $transport transport"
done

# 1b. Unset PETARING_TRANSPORT: every rank is on this host, so shm; results checked.
if ! timeout 60 "$petaring" launch -n 3 -- "$petaring" bench allreduce --max-bytes 4M --check \
     >"$work/auto.log" 2>&1; then
  fail "launch -n 3 bench allreduce --check exited non-zero"; tail -20 "$work/auto.log"
fi
grep -q "using the shm transport (every rank on host" "$work/auto.log" ||
  fail "automatic choice did not pick shm"
grep -q "#wrong in all: 0 OK" "$work/auto.log" || fail "allreduce over shm gave wrong values"

# 1c. Four ranks on two faked hosts (PETARING_HOST_ID): shm between ranks of one host, tcp
# across, and the hierarchical allreduce chosen automatically; results checked.
if ! timeout 60 "$petaring" launch -n 4 -- bash -c \
     'PETARING_HOST_ID=fake-host-$((PETARING_RANK / 2)) exec "$0" bench allreduce --min 1M --max 2M --check --json' \
     "$petaring" >"$work/hosts.log" 2>&1; then
  fail "launch -n 4 on two faked hosts exited non-zero"; tail -20 "$work/hosts.log"
fi
grep -q "using the shm+tcp transport (2 hosts" "$work/hosts.log" || fail "per-pair choice was not shm+tcp"
grep -q '"algorithm":"hierarchical"' "$work/hosts.log" || fail "the hierarchical allreduce was not chosen"
grep -q '"wrong":0' "$work/hosts.log" && ! grep -q '"wrong":[1-9]' "$work/hosts.log" ||
  fail "hierarchical allreduce over shm+tcp gave wrong values"

# 2. Three ranks of a long run; rank 1 is killed. Its pid comes from the rank's environment.
start=$(date +%s)
"$petaring" launch -n 3 --grace 2 -- "$petaring" train "$recipe" \
  --set training.max_steps=100000 --set training.log_every=1000 --set training.epochs=1000 \
  >"$work/kill.log" 2>&1 &
launcher=$!
victim=
ranks=
for _ in $(seq 1 100); do
  sleep 0.1
  ranks=$(pgrep -P "$launcher")
  for pid in $ranks; do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "PETARING_RANK=1"; then victim=$pid; fi
  done
  [[ -n "$victim" ]] && break
done
if [[ -z "$victim" ]]; then
  fail "no rank 1 child of the launcher found"
else
  sleep 2
  kill -9 "$victim"
  code=
  for _ in $(seq 1 300); do  # at most 30 s
    if ! kill -0 "$launcher" 2>/dev/null; then wait "$launcher"; code=$?; break; fi
    sleep 0.1
  done
  elapsed=$(( $(date +%s) - start ))
  if [[ -z "$code" ]]; then
    fail "launch still running 30 s after rank 1 was killed"
  else
    [[ "$code" != 0 ]] || fail "launch exited 0 after a rank was killed"
    grep -q "rank 1 (pid $victim) was killed by signal 9" "$work/kill.log" ||
      { fail "launch did not name the killed rank 1"; tail -20 "$work/kill.log"; }
    echo "killed rank 1 after 2 s; launch exited $code after ${elapsed} s in all"
  fi
  launcher=
fi
for pid in $ranks; do
  if kill -0 "$pid" 2>/dev/null && [[ $(ps -o stat= -p "$pid") != Z* ]]; then
    fail "rank pid $pid still running after the launcher exited"; kill -9 "$pid"
  fi
done

# Segments that appeared since and are still there 5 s later were left behind (other
# tests running at the same time have theirs in /dev/shm only during their start-up).
left=$(comm -13 <(sort <<<"$shm_before") <(ls /dev/shm 2>/dev/null | grep '^petaring-' | sort))
for _ in $(seq 50); do
  [[ -z $left ]] && break
  sleep 0.1
  left=$(comm -12 <(sort <<<"$left") <(ls /dev/shm 2>/dev/null | grep '^petaring-' | sort))
done
[[ -z $left ]] || fail "petaring-* segments left in /dev/shm: $left"

# 3. Bad flags.
"$petaring" launch -n 0 -- true >/dev/null 2>&1; [[ $? == 2 ]] || fail "launch -n 0 did not exit 2"
"$petaring" launch -n 2 >/dev/null 2>&1; [[ $? == 2 ]] || fail "launch without a command did not exit 2"
PETARING_TRANSPORT=udp "$petaring" launch -n 2 -- "$petaring" bench allreduce --max-bytes 8 \
  >/dev/null 2>&1; [[ $? != 0 ]] || fail "PETARING_TRANSPORT=udp did not fail"

[[ $status == 0 ]] && echo "PASS"
exit $status

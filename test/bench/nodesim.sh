#!/bin/bash
# nodesim.sh measures scheduling throughput on loopback: it starts NSCHED orch-scheduler
# processes (one bootstrapped, or a --bootstrap-expect group), runs orch-nodesim against them,
# and prints, per scheduler, its CPU seconds (whole run, and from the moment the nodes were
# connected) and its peak RSS, next to the simulator's own CPU and RSS.
#
#   go build -o bin/ ./cmd/orch-scheduler ./test/bench/cmd/orch-nodesim
#   test/bench/nodesim.sh bin 1 10000 20000 32     # 1 scheduler, 10,000 nodes, 20,000 tasks, 32 callers
#   test/bench/nodesim.sh bin 3 10000 100000 32
#
# PROF=seconds also takes a CPU profile of every scheduler once the nodes are connected, and a
# heap profile at the end (cpu-PORT.pprof, heap-PORT.pprof in OUT, default the current dir).
# KEEP=1 keeps the data dirs and logs. Ports 17410-17432 must be free.
set -u
if [ $# -lt 4 ]; then
  sed -n '2,15p' "$0"
  exit 2
fi
BIN=$1; NS=$2; NODES=$3; TASKS=$4; WORKERS=${5:-32}; shift $(($# < 5 ? $# : 5))
OUT=${OUT:-.}
D=$(mktemp -d /tmp/orch-nodesim.XXXX)
pids=(); eps=(); https=()
for i in $(seq 1 "$NS"); do
  g=$((17400+i*10))
  eps+=("127.0.0.1:$g"); https+=("127.0.0.1:$((g+1))")
done
join=""; for e in "${eps[@]}"; do join="$join --join $e"; done
for i in $(seq 1 "$NS"); do
  g=$((17400+i*10))
  extra=""; [ "$NS" -gt 1 ] && extra="--bootstrap-expect $NS $join"
  # shellcheck disable=SC2086
  "$BIN/orch-scheduler" --data-dir "$D/s$i" --node-id "s$i" --grpc-addr "127.0.0.1:$g" --http-addr "127.0.0.1:$((g+1))" \
    --raft-addr "127.0.0.1:$((g+2))" --log-level warn $extra >"$D/s$i.log" 2>&1 &
  pids+=($!)
done
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$D"; }
trap cleanup EXIT
sleep 3
EPS=$(IFS=,; echo "${eps[*]}")
/usr/bin/time -f "nodesim: %U s user, %S s sys, peak RSS %M KiB, %e s" "$BIN/orch-nodesim" -endpoints "$EPS" \
  -nodes "$NODES" -tasks "$TASKS" -workers "$WORKERS" "$@" >"$D/sim.out" 2>&1 &
simpid=$!
tck=$(getconf CLK_TCK)
cpuof() { local st; read -ra st < <(sed 's/.*) //' "/proc/$1/stat"); echo $(( st[11] + st[12] )); }
( until grep -q registered "$D/sim.out" 2>/dev/null; do sleep 0.1; done
  for p in "${pids[@]}"; do echo "$p $(cpuof "$p")"; done > "$D/cpu-at-reg" ) &
if [ -n "${PROF:-}" ]; then
  until grep -q registered "$D/sim.out"; do sleep 0.2; done
  cps=()
  for h in "${https[@]}"; do curl -s "http://$h/debug/pprof/profile?seconds=$PROF" -o "$OUT/cpu-${h##*:}.pprof" & cps+=($!); done
  wait $simpid
  for h in "${https[@]}"; do curl -s "http://$h/debug/pprof/heap" -o "$OUT/heap-${h##*:}.pprof"; done
  wait "${cps[@]}"
else
  wait $simpid
fi
cat "$D/sim.out"
for i in "${!pids[@]}"; do
  p=${pids[$i]}
  cpu=$(cpuof "$p")
  reg=$(awk -v p="$p" '$1==p{print $2}' "$D/cpu-at-reg" 2>/dev/null)
  hwm=$(awk '/VmHWM/{print $2}' "/proc/$p/status")
  printf 'scheduler s%d: %.1f CPU-s (%.1f after the nodes connected), peak RSS %.2f GiB\n' $((i+1)) \
    "$(echo "$cpu/$tck" | bc -l)" "$(echo "($cpu-${reg:-0})/$tck" | bc -l)" "$(echo "$hwm/1048576" | bc -l)"
done

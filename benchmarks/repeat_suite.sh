#!/usr/bin/env bash
# Run the fast test set N times in a row, in varying orders, to find tests that fail by chance
# (benchmarks/RESULTS.md, "The test suite under load"). Usage, from the repository root:
#   bash benchmarks/repeat_suite.sh N [pin]     # pin: every run on core 0 (taskset -c 0)
# Run i: i % 3 == 1 -> random order over the whole set; 2 -> random order within modules; 0 -> file order.
# One line per run goes to stdout; each run's log to $LOGS (default /tmp/repeat-suite).
set -u
n=${1:?how many runs}; pin=${2:-}
logs=${LOGS:-/tmp/repeat-suite}; mkdir -p "$logs"
py=${PYTHON:-.venv/bin/python}
failed=0
for i in $(seq 1 "$n"); do
  case $((i % 3)) in
    1) order="-p random_order --random-order-bucket=global";;
    2) order="-p random_order --random-order-bucket=module";;
    *) order="";;
  esac
  pre=""; [ "$pin" = pin ] && pre="taskset -c 0"
  start=$(date +%s)
  # shellcheck disable=SC2086
  $pre "$py" -m pytest -q -p no:cacheprovider -m "not slow and not integration" $order \
      --basetemp="$logs/tmp-$i" > "$logs/run-$i.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && failed=$((failed + 1))
  echo "run $i rc=$rc ${pre:-unpinned} order='${order:-file}' $(( $(date +%s) - start )) s: $(tail -1 "$logs/run-$i.log")"
  rm -rf "$logs/tmp-$i"
done
echo "$failed of $n runs failed"
[ $failed -eq 0 ]

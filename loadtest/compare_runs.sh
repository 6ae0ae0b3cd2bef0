#!/usr/bin/env bash
# compare.sh several times in a row, then how often each target was met. One compare run's
# median still moves by several percent with the neighbours' load, and the targets are judged
# over runs ("met in 5 of 11"), so this makes that figure one command: it keeps every run's
# full output and prints, per target, each run's median ratio, the runs that meet it, and the
# median and count over all rounds of all runs, from the unrounded ratios that compare.sh
# leaves beside each run's output. It also checks that no row of any run had a non-2xx
# response or an error.
#
# Usage: RUNS=5 loadtest/compare_runs.sh       (RUNS=3 by default; about 3.5 min per run)
#        BIN=... NO_BUILD=1 RUNS=8 loadtest/compare_runs.sh: a given build, e.g. pgo.sh's
#        Every other variable (ROUNDS, DURATION, UNIQUE, ...) is passed on to compare.sh.
# Outputs: target/loadtest/compare-runs/run-N.txt, one per run, and run-N.json (its ratios).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$ROOT/target/loadtest}
RUNS=${RUNS:-3}
OUT="$WORK/compare-runs"
# Build once here, not in every run (lib.sh's build(), which cannot be sourced here: sourcing
# lib.sh takes the lock that each compare.sh run needs).
if [ -z "${NO_BUILD:-}" ]; then
  (cd "$ROOT" && cargo build --profile profiling --quiet)
fi
export NO_BUILD=1
mkdir -p "$OUT"
rm -f "$OUT"/run-*.txt "$OUT"/run-*.json
for i in $(seq 1 "$RUNS"); do
  echo "compare run $i of $RUNS" >&2
  if ! RATIOS_OUT="$OUT/run-$i.json" "$ROOT/loadtest/compare.sh" > "$OUT/run-$i.txt" 2>&1; then
    echo "compare run $i failed; its output:" >&2
    cat "$OUT/run-$i.txt" >&2
    exit 1
  fi
done
python3 - "$OUT" "$RUNS" <<'PY'
import json, re, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
targets = {}   # ratio name -> (">=" or "<=", goal, [run medians], [every round])
bad_rows = []
for i in range(1, runs + 1):
    for line in open(f"{out}/run-{i}.txt"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        # Result rows: scenario, req/s, p50, p99, non-2xx/errors.
        if len(cells) == 5 and re.fullmatch(r"[\d,]+", cells[1]) and cells[4] != "0":
            bad_rows.append(f"run {i}: {cells[0]}: {cells[4]} non-2xx/errors")
    with open(f"{out}/run-{i}.json") as f:
        for name, r in json.load(f).items():
            m = re.fullmatch(r"([<>]=) ([\d.]+)x", r["target"])
            t = targets.setdefault(name, (m.group(1), float(m.group(2)), [], []))
            t[2].append(statistics.median(r["rounds"]))
            t[3].extend(r["rounds"])
if not targets:
    sys.exit("no ratios found beside the runs' output")
meets = lambda op, goal, x: x >= goal if op == ">=" else x <= goal
print(f"\n{runs} runs of compare.sh; run outputs in {out}/\n")
print("| ratio | target | run medians | runs meeting it | all rounds: median, meeting it |")
print("|---|---|---|---|---|")
for name, (op, goal, med, per) in targets.items():
    print(f"| {name} | {op} {goal}x | " + " ".join(f"{x:.3f}" for x in med) +
          f" | {sum(meets(op, goal, x) for x in med)} of {len(med)} | "
          f"{statistics.median(per):.3f}x, {sum(meets(op, goal, x) for x in per)} of {len(per)} |")
print(f"\nrows with non-2xx or errors: {len(bad_rows)}")
for b in bad_rows:
    print("  " + b)
sys.exit(1 if bad_rows else 0)
PY

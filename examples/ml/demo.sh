#!/usr/bin/env bash
# The demo behind `make demo`: preview, run, run again (nothing reruns), change a
# parameter (only what depends on it reruns, and the preview says why).
set -euo pipefail
dagmill=$1 target=$2 data=$3
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$data"   # the demo's own outputs only: start from nothing
step "1. preview: nothing has run yet, so every task is PENDING"
"$dagmill" preview "$target" --data "$data"

step "2. run it, two tasks at a time"
"$dagmill" run "$target" --data "$data" --workers 2

step "3. run again: everything is complete, nothing reruns"
"$dagmill" run "$target" --data "$data"

step "4. change one parameter: the preview says what must rerun and why"
"$dagmill" preview "$target" --data "$data" -p model=forest
"$dagmill" run "$target" --data "$data" -p model=forest --workers 2

step "5. the run record (SQLite in .dagmill/)"
"$dagmill" runs list --limit 5

step "6. build a job (validated, its code version pinned), run it in the background, follow its logs"
job=$("$dagmill" jobs build "$target" --data "$data" -p model=forest -p seed=1)
run=$("$dagmill" jobs run "$job")
echo "job $job started run $run"
"$dagmill" runs logs "$run" --follow
"$dagmill" jobs list
printf '\nreports: %s\n' "$(ls "$data"/Evaluate/*.json | tr '\n' ' ')"

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

step "7. schedule it: every 5 seconds, fired by \`dagmill server\` (Ctrl-C or SIGTERM drains it)"
sjob=$("$dagmill" jobs build "$target" --data "$data" -p model=forest -p seed=2 \
  --every 5s --start "2020-01-01 00:00")
"$dagmill" jobs next "$sjob"
log=$(mktemp)
"$dagmill" server --port 0 --max-runs 1 2>"$log" &
server=$!
python=$(dirname "$dagmill")/python
ended() {  # how many scheduled runs of the job have ended
  "$dagmill" runs list --json --limit 50 | "$python" -c "import json, sys
print(sum(r['job_id'] == sys.argv[1] and r['scheduled_for'] is not None
          and r['status'] in ('SUCCESS', 'FAILED') for r in json.load(sys.stdin)))" "$sjob"
}
for _ in $(seq 1 120); do [ "$(ended)" -ge 2 ] && break; sleep 0.5; done
kill -TERM "$server"
wait "$server"
cat "$log"
rm -f "$log"
"$dagmill" jobs pause "$sjob" >/dev/null   # no more slots of it in the steps below
"$dagmill" jobs list
"$dagmill" runs list --limit 4

step "8. projects share a quota: project demo has 1 CPU, two runs each train a forest wanting 1"
"$dagmill" projects create demo --cpu 1 --memory 2Gi --description "make demo" --quiet 2>/dev/null \
  || "$dagmill" projects set demo --cpu 1 --memory 2Gi --quiet
for seed in 3 4; do
  "$dagmill" run "$target" --data "$data" --project demo -p model=forest -p trees=1500 \
    -p seed=$seed --quiet &
done
pending() {  # how many tasks of the project wait for room now
  "$dagmill" projects show demo --json | "$python" -c "import json, sys
print(len(json.load(sys.stdin)['pending_tasks']))"
}
for _ in $(seq 1 100); do [ "$(pending)" -ge 1 ] && break; sleep 0.2; done
"$dagmill" projects show demo     # one Train runs, the other waits PENDING, saying why
running() {  # how many tasks of the project hold part of its quota now
  "$dagmill" projects show demo --json | "$python" -c "import json, sys
print(len(json.load(sys.stdin)['running_tasks']))"
}
for _ in $(seq 1 100); do [ "$(pending)" -eq 0 ] && [ "$(running)" -ge 1 ] && break; sleep 0.2; done
"$dagmill" projects show demo     # the first ended: the waiting Train runs now
wait
"$dagmill" runs list --limit 2
waited=$("$dagmill" runs list --json --limit 2 | "$python" -c "import json, subprocess, sys
for r in json.load(sys.stdin):
    show = json.loads(subprocess.run([sys.argv[1], 'runs', 'show', r['id'], '--json'],
                                     capture_output=True, text=True, check=True).stdout)
    if any(a.get('waited') for t in show['tasks'] for a in t['history']):
        print(r['id'])
        break" "$dagmill")
[ -n "$waited" ] && "$dagmill" runs show "$waited"   # its Train: "waited ...s for resources"

step "9. the REST API: a token, the job run over HTTP (curl) and by the CLI as a client of the server"
log=$(mktemp)
"$dagmill" server --port 0 --max-runs 1 2>"$log" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true' EXIT   # also if a step below fails
url=""
for _ in $(seq 1 100); do
  url=$(sed -n 's/.*api_listening url=\([^ ]*\).*/\1/p;T;q' "$log")
  [ -n "$url" ] && break; sleep 0.1
done
token=$("$dagmill" tokens create --project default --role operator --name demo --expires 1d --json \
  | "$python" -c "import json, sys; print(json.load(sys.stdin)['bearer'])")
echo "API root: $url   token: ${token%%.*}.…"
curl -sS -X POST -H "Authorization: Bearer $token" "$url/jobs/$job/run" | "$python" -c "import json, sys
run = json.load(sys.stdin)  # the queued run, as \`runs list --json\` shows it
print(json.dumps({k: run[k] for k in ('id', 'job_id', 'status', 'created_at_iso')}, indent=2))"
DAGMILL_SERVER=$url DAGMILL_TOKEN=$token "$dagmill" jobs run "$job" --wait -p seed=9 --quiet \
  && echo "run by the CLI, through the API: SUCCESS"
DAGMILL_SERVER=$url DAGMILL_TOKEN=$token "$dagmill" runs list --limit 3
kill -TERM "$server"
wait "$server"
trap - EXIT
grep -c ' request ' "$log" | xargs -I{} echo "the server logged {} API requests (one line each)"
rm -f "$log"

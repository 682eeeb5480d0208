#!/usr/bin/env bash
# make demo: starts triaged on a temporary data dir and a free port, sends a generated phantom
# study to it with DCMTK's storescu, waits for the study to complete and prints what the node knows.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$ROOT" && cd "$BUILD" && pwd)
WORK=$(mktemp -d /tmp/triage-demo.XXXXXX)
NODE_PID=""
cleanup() {
  [ -n "$NODE_PID" ] && kill -TERM "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== generating a phantom CT chest study with a lung tumor (tools/phantoms)"
/usr/bin/python3 "$ROOT/tools/phantoms/write_study.py" "$WORK/study" --seed 7 --region CHEST \
  --lesions "lung tumor" --slices 48

BUNDLE="$ROOT/models/unibiomed-mini"
[ -f "$BUNDLE/model.json" ] || BUNDLE=""
cat > "$WORK/triage.toml" <<TOML
[node]
ae_title = "TRIAGE"
bind = "127.0.0.1"
port = 0
data_dir = "data"
[ingest]
allowed_callers = ["*"]
study_quiet_seconds = 2
min_free_mb = 64
[model]
bundle = "$BUNDLE"
[api]
listen = ""
TOML

echo "== starting triaged"
"$BUILD/triaged" --config "$WORK/triage.toml" 2> "$WORK/triaged.log" &
NODE_PID=$!
for _ in $(seq 1 100); do
  PORT=$(sed -n 's/.*triaged ready: AE [^ ]* port \([0-9]*\).*/\1/p' "$WORK/triaged.log")
  [ -n "$PORT" ] && break
  kill -0 "$NODE_PID" 2>/dev/null || { cat "$WORK/triaged.log"; exit 1; }
  sleep 0.1
done
[ -n "$PORT" ] || { echo "triaged did not start"; cat "$WORK/triaged.log"; exit 1; }
echo "   listening on port $PORT"

echo "== sending the study with storescu"
TCP_NODELAY=1 storescu -aet DEMO_CT -aec TRIAGE +sd +r 127.0.0.1 "$PORT" "$WORK/study"

echo "== waiting for the study to complete (study_quiet_seconds = 2) and be analyzed"
CTL=("$BUILD/triagectl" --config "$WORK/triage.toml")
WANT='"state": "done"'
[ -n "$BUNDLE" ] || WANT='"state": "queued"'
for _ in $(seq 1 900); do
  "${CTL[@]}" studies --json | grep -q "$WANT" && break
  "${CTL[@]}" studies --json | grep -q '"state": "failed"' && break
  sleep 0.2
done
"${CTL[@]}" studies
UID_=$("${CTL[@]}" studies --json | sed -n 's/.*"study_uid": "\([^"]*\)".*/\1/p' | head -1)
echo
"${CTL[@]}" study "$UID_"
echo
echo "== audit trail (last events)"
"${CTL[@]}" audit | tail -4
echo
if [ -z "$BUNDLE" ]; then
  echo "No model bundle in models/unibiomed-mini: the study was received and queued, not analyzed."
fi
echo "SEG/SR outputs and their delivery to PACS are not built yet (see the open issues)."

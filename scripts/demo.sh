#!/usr/bin/env bash
# make demo: starts triaged on a temporary data dir and a free port, sends a generated phantom
# study to it with DCMTK's storescu, waits for the study to complete and prints what the node knows.
# The node's outputs (SEG, SR, key images, KOS) and the key image as a PNG rendered by the node are
# kept in $BUILD/demo/ (the temp dir goes at exit). DEMO_SERVE=1 keeps the node and its worklist
# page running until Ctrl-C.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$ROOT" && cd "$BUILD" && pwd)
WORK=$(mktemp -d /tmp/triage-demo.XXXXXX)
KEEP="$BUILD/demo"  # what outlives the demo
NODE_PID=""
PACS_PID=""
cleanup() {
  [ -n "$NODE_PID" ] && kill -TERM "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null || true
  [ -n "$PACS_PID" ] && kill -TERM "$PACS_PID" 2>/dev/null && wait "$PACS_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
trap cleanup EXIT

echo "== generating a phantom CT chest study with a lung tumor (tools/phantoms)"
/usr/bin/python3 "$ROOT/tools/phantoms/write_study.py" "$WORK/study" --seed 7 --region CHEST \
  --lesions "lung tumor" --slices 48

echo "== starting a local PACS (Orthanc) on loopback"
PACS_PORT=$(free_port)
PACS_HTTP=$(free_port)
cat > "$WORK/orthanc.json" <<JSON
{"Name": "triage-demo", "StorageDirectory": "$WORK/pacs", "IndexDirectory": "$WORK/pacs", "DicomAet": "PACS",
 "DicomPort": $PACS_PORT, "HttpPort": $PACS_HTTP, "RemoteAccessAllowed": false, "Plugins": []}
JSON
Orthanc "$WORK/orthanc.json" > "$WORK/orthanc.log" 2>&1 &
PACS_PID=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PACS_HTTP/system" >/dev/null && break
  sleep 0.1
done
echo "   Orthanc AE PACS on port $PACS_PORT (REST on http://127.0.0.1:$PACS_HTTP)"

API_PORT=$(free_port)
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
[[destination]]
name = "pacs"
ae_title = "PACS"
host = "127.0.0.1"
port = $PACS_PORT
send = ["seg", "sr", "keyimages", "kos"]
[delivery]
retry_base_seconds = 1
[api]
listen = "127.0.0.1:$API_PORT"
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
# The scanner sends its images to the PACS as well; the node's results join them in the same study.
TCP_NODELAY=1 storescu -aet DEMO_CT -aec PACS +sd +r 127.0.0.1 "$PACS_PORT" "$WORK/study"

echo "== waiting for the study to complete (study_quiet_seconds = 2) and be analyzed"
CTL=("$BUILD/triagectl" --config "$WORK/triage.toml")
WANT='"state": "done"'
[ -n "$BUNDLE" ] || WANT='"state": "queued"'
for _ in $(seq 1 900); do
  "${CTL[@]}" studies --json | grep -q "$WANT" && break
  "${CTL[@]}" studies --json | grep -q '"state": "failed"' && break
  sleep 0.2
done
UID_=$("${CTL[@]}" studies --json | sed -n 's/.*"study_uid": "\([^"]*\)".*/\1/p' | head -1)
if [ -n "$BUNDLE" ]; then
  echo "== waiting for the SEG, SR, key images and KOS to be delivered to the PACS"
  for _ in $(seq 1 300); do
    "${CTL[@]}" study "$UID_" --json | grep -q '"state": "pending"' || break
    sleep 0.2
  done
fi
"${CTL[@]}" worklist
echo
"${CTL[@]}" study "$UID_"
echo
echo "== audit trail (last events)"
"${CTL[@]}" audit | tail -4
echo
if [ -z "$BUNDLE" ]; then
  echo "No model bundle in models/unibiomed-mini: the study was received and queued, not analyzed."
fi
echo "== what the PACS (Orthanc) holds for the study"
/usr/bin/python3 - "$PACS_HTTP" <<'PY'
import json, sys, urllib.request
get = lambda path: json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{path}"))
for study in get("/studies"):
    print(f"   study {get(f'/studies/{study}')['MainDicomTags'].get('StudyInstanceUID')}")
    for s in get(f"/studies/{study}")["Series"]:
        x = get(f"/series/{s}")
        t = x["MainDicomTags"]
        print(f"     {t.get('Modality', '?'):4} series {t.get('SeriesNumber', ''):>5}  {len(x['Instances']):3} instance(s)"
              f"  {t.get('SeriesDescription', '')}")
PY

# Keep the node's outputs and, while it still runs, the key image as the worklist page shows it
# (rendered by the node from its own key image: GET /api/v1/studies/{uid}/keyimages/0.png).
rm -rf "$KEEP"
mkdir -p "$KEEP"
[ -d "$WORK/data/outputs" ] && cp -r "$WORK/data/outputs" "$KEEP/outputs"
PNG="$KEEP/keyimage-0.png"
if curl -sf -o "$PNG" "http://127.0.0.1:$API_PORT/api/v1/studies/$UID_/keyimages/0.png"; then
  KEY_LINE="key image (PNG):       $PNG"
else
  rm -f "$PNG"
  KEY_LINE="key image (PNG):       none (the study has no key image)"
fi
echo "== kept after the demo"
echo "   outputs (SEG/SR/KOS/key images): $KEEP/outputs"
echo "   $KEY_LINE"
echo "   The PACS got the outputs over C-STORE."
echo
echo "== worklist page"
echo "   http://127.0.0.1:$API_PORT/  (served by triaged while it runs with [api] listen = \"127.0.0.1:$API_PORT\")"
if [ -n "${DEMO_SERVE:-}" ]; then
  echo "   DEMO_SERVE is set: the node keeps running; open the URL above, Ctrl-C to stop."
  wait "$NODE_PID" || true
else
  echo "   The demo stops the node now; DEMO_SERVE=1 make demo keeps it running for the page."
fi

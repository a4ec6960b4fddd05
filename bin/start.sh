#!/usr/bin/env bash
# Start the server under gunicorn in the background, as the tutorial's start.sh did,
# with gunicorn.conf.py (port from $PORT, default 8080).
#
#   bin/start.sh            # pid and log in ./var (or $RUN_DIR)
#   bin/stop.sh             # stops it and waits until it has exited
#
# Returns once the server answers /healthz, or fails showing the log's tail.
set -euo pipefail
cd "$(dirname "$0")/.."

run_dir=${RUN_DIR:-var}
mkdir -p "$run_dir"
pid_file="$run_dir/model-serving.pid"
log_file="$run_dir/model-serving.log"
gunicorn=${GUNICORN:-.venv/bin/gunicorn}
port=${PORT:-8080}

if [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    echo "already running with pid $(cat "$pid_file") (bin/stop.sh stops it)" >&2
    exit 1
fi
if [[ ! -x "$gunicorn" ]]; then
    echo "$gunicorn not found: run 'make install' first (or set GUNICORN)" >&2
    exit 1
fi

nohup "$gunicorn" -c gunicorn.conf.py --pid "$pid_file" main:app >>"$log_file" 2>&1 &
launched=$!

for _ in $(seq 1 600); do
    if ! kill -0 "$launched" 2>/dev/null; then
        echo "gunicorn exited during start-up; last lines of $log_file:" >&2
        tail -n 20 "$log_file" >&2
        exit 1
    fi
    if [[ -f "$pid_file" ]] && python3 - "$port" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
PY
    then
        echo "serving on port $port (pid $(cat "$pid_file"), log $log_file)"
        exit 0
    fi
    sleep 0.1
done
echo "gunicorn did not answer within 60 s; see $log_file" >&2
exit 1

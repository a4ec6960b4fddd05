#!/usr/bin/env bash
# Stop the server bin/start.sh started: send TERM to the pid in the pid file (not the
# file's path, the tutorial's bug) and wait until the process has exited. gunicorn
# finishes in-flight requests first (GUNICORN_GRACEFUL_TIMEOUT); if it is still there
# after that plus a margin, it is killed.
set -euo pipefail
cd "$(dirname "$0")/.."

run_dir=${RUN_DIR:-var}
pid_file="$run_dir/model-serving.pid"
grace=$(( ${GUNICORN_GRACEFUL_TIMEOUT:-8} + 5 ))

if [[ ! -f "$pid_file" ]]; then
    echo "not running (no $pid_file)" >&2
    exit 0
fi
pid=$(cat "$pid_file")
if [[ ! "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
    echo "not running (stale pid file $pid_file)" >&2
    rm -f "$pid_file"
    exit 0
fi

kill -TERM "$pid"
for _ in $(seq 1 $(( grace * 10 ))); do
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pid_file"
        echo "stopped (pid $pid)"
        exit 0
    fi
    sleep 0.1
done
echo "pid $pid still running after ${grace} s; sending KILL" >&2
kill -KILL "$pid" 2>/dev/null || true
rm -f "$pid_file"
exit 1

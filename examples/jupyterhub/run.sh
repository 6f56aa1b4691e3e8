#!/usr/bin/env bash
# JupyterHub on this machine with two users, "ada" and "bob", whose servers
# share one Redis: nyo-realtime across users. docs/deployment.md explains it;
# tests/e2e/test_jupyterhub_e2e.py runs this very script.
#
#   examples/jupyterhub/run.sh [jupyterhub options...]
#
# Needs, on PATH: jupyterhub and jupyterhub-singleuser in an environment with
# nyo-realtime-ext (`pip install jupyterhub nyo-realtime-ext`, or the checkout's
# .venv), JupyterHub's proxy (`npm install -g configurable-http-proxy`, or
# `npm install -g --prefix .venv configurable-http-proxy` into the .venv), and
# redis-server unless NYO_REDIS_URL names a Redis already running.
#
# Then open http://127.0.0.1:8000/, log in as ada with any password, and as bob
# in a private window. Ctrl-C stops the hub, the users' servers and the Redis.
#
# Environment:
#   NYO_HUB_DIR     state and homes (default ./nyo-hub-demo): homes/ada, homes/bob
#   NYO_HUB_PORT    the hub's port on 127.0.0.1 (default 8000)
#   NYO_REDIS_URL   a Redis to use instead of starting one
#   NYO_REDIS_PORT  the port of the Redis this script starts (default 6390)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

NYO_HUB_DIR="$(mkdir -p "${NYO_HUB_DIR:-nyo-hub-demo}" && cd "${NYO_HUB_DIR:-nyo-hub-demo}" && pwd)"
export NYO_HUB_DIR
export NYO_HUB_PORT="${NYO_HUB_PORT:-8000}"

for tool in jupyterhub jupyterhub-singleuser configurable-http-proxy; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run.sh: $tool is not on PATH (see the top of $0)" >&2
    exit 1
  fi
done

redis=""
hub=""
stop() {
  # The hub stops the users' servers and its proxy before it exits.
  if [ -n "$hub" ]; then kill -TERM "$hub" 2>/dev/null || true; fi
}
cleanup() {
  if [ -n "$redis" ]; then kill -TERM "$redis" 2>/dev/null || true; fi
}
trap stop INT TERM
trap cleanup EXIT

if [ -z "${NYO_REDIS_URL:-}" ]; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "run.sh: redis-server is not on PATH; install it or set NYO_REDIS_URL" >&2
    exit 1
  fi
  port="${NYO_REDIS_PORT:-6390}"
  # A throwaway Redis: no snapshots, no append-only file.
  redis-server --port "$port" --bind 127.0.0.1 --dir "$NYO_HUB_DIR" \
    --save "" --appendonly no >"$NYO_HUB_DIR/redis.log" 2>&1 &
  redis=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    if ! kill -0 "$redis" 2>/dev/null; then
      echo "run.sh: redis-server did not start:" >&2
      cat "$NYO_HUB_DIR/redis.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  export NYO_REDIS_URL="redis://127.0.0.1:$port/0"
fi

echo "run.sh: JupyterHub at http://127.0.0.1:$NYO_HUB_PORT/ (users ada and bob, any password)," \
  "Redis at $NYO_REDIS_URL, state in $NYO_HUB_DIR" >&2
jupyterhub -f "$here/jupyterhub_config.py" "$@" &
hub=$!
status=0
wait "$hub" || status=$?
# A signal interrupts `wait` (the trap then asked the hub to stop): wait for the hub.
if kill -0 "$hub" 2>/dev/null; then
  status=0
  wait "$hub" || status=$?
fi
exit "$status"

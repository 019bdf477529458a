#!/usr/bin/env bash
# aiodock quickstart (run as root from the repository root):
#   installs runc, busybox-static, iptables and aiodock, starts `aiodock daemon` in the background (unless one already
#   answers), loads an offline busybox image and runs a first container.
set -euo pipefail

cd "$(dirname "$0")/.."

SOCK=/var/run/aiodock.sock
HOST="unix://$SOCK"
LOG=/var/log/aiodock.log
PIDFILE=/var/run/aiodock.pid
IMAGE_TAR=/tmp/busybox.tar

if [[ $(id -u) != 0 ]]; then
    echo "quickstart: run me as root (containers need runc, overlayfs and cgroups)" >&2
    exit 1
fi

echo "==> installing system packages (runc, busybox-static, iptables)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q </dev/null
apt-get install -y -q --no-install-recommends runc busybox-static iptables ca-certificates </dev/null

echo "==> installing aiodock"
PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q . </dev/null

ping_daemon() {
    python3 - "$SOCK" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
try:
    s.connect(sys.argv[1])
    s.sendall(b"GET /_ping HTTP/1.1\r\nHost: aiodock\r\nConnection: close\r\n\r\n")
    ok = s.recv(64).startswith(b"HTTP/1.1 200")
except OSError:
    ok = False
sys.exit(0 if ok else 1)
PY
}

if ping_daemon; then
    echo "==> a daemon already answers on $HOST"
else
    echo "==> starting aiodock daemon (logs: $LOG)"
    nohup aiodock daemon -H "$HOST" --pidfile "$PIDFILE" >>"$LOG" 2>&1 </dev/null &
    daemon_pid=$!
    for _ in $(seq 1 300); do
        if ping_daemon; then
            break
        fi
        if ! kill -0 "$daemon_pid" 2>/dev/null; then
            echo "quickstart: the daemon exited; last log lines:" >&2
            tail -n 30 "$LOG" >&2
            exit 1
        fi
        sleep 0.1
    done
    ping_daemon || { echo "quickstart: the daemon did not answer /_ping within 30s (see $LOG)" >&2; exit 1; }
    echo "==> daemon running (pid $daemon_pid)"
fi

echo "==> building busybox:latest offline from the host's busybox-static"
python3 scripts/mkimage-busybox.py "$IMAGE_TAR"
aiodock -H "$HOST" load -i "$IMAGE_TAR"

echo "==> aiodock run --rm busybox echo hello from aiodock"
aiodock -H "$HOST" run --rm busybox echo hello from aiodock

cat <<EOT

aiodock is running. Point the docker CLI (or docker-py) at it:

    export DOCKER_HOST=$HOST
    docker run --rm busybox uname -a
    aiodock ps -a

Stop the daemon (containers keep running; shims outlive the daemon):

    kill \$(cat $PIDFILE)
EOT

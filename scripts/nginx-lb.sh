#!/usr/bin/env bash
# Load-balance several Mitosis coordinators on loopback with Debian's nginx.
#
#   scripts/nginx-lb.sh LISTEN_PORT UPSTREAM_PORT [UPSTREAM_PORT...]
#
# Writes a config into a fresh temporary directory (pid file, logs and temp paths there too), runs
# nginx in the foreground and stops it when this script gets SIGINT/SIGTERM or exits. Long-polls
# (GET /workers/tasks?wait=...) and the SSE stream need long read timeouts and no buffering; a
# coordinator that dies is skipped for 5 s, and a request that failed to *connect* is retried on
# the next one (never a request that may have reached a coordinator: non-idempotent POSTs are not
# retried, the worker retries them itself).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 LISTEN_PORT UPSTREAM_PORT [UPSTREAM_PORT...]" >&2
  exit 2
fi
listen=$1; shift
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
if [ ! -x "$NGINX" ]; then
  echo "nginx not found: apt-get install -y nginx" >&2
  exit 1
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/mito-nginx.XXXXXX")
upstreams=""
for port in "$@"; do
  upstreams+="        server 127.0.0.1:${port} max_fails=1 fail_timeout=5s;"$'\n'
done
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
daemon off;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    client_max_body_size 0;
    upstream mitosis {
        least_conn;
$upstreams        keepalive 64;
    }
    server {
        listen 127.0.0.1:${listen};
        location / {
            proxy_pass http://mitosis;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_read_timeout 120s;
            proxy_send_timeout 120s;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
        }
    }
}
CONF
"$NGINX" -t -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 || { "$NGINX" -t -c "$dir/nginx.conf" -p "$dir"; exit 1; }
"$NGINX" -c "$dir/nginx.conf" -p "$dir" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
trap 'exit 0' INT TERM
echo "nginx (pid $pid) on 127.0.0.1:${listen} -> $* (config $dir/nginx.conf)" >&2
wait "$pid"

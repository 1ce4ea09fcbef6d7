#!/bin/bash
# HTTP/2 CPU per request on loopback (issue 15), by hand. `cargo xtask bench --only h2` now has these as rows
# (sticky-h2-pinned, sticky-h2-firstwave, haproxy-h2-pinned, nginx-h2: bench/README.md, *HTTP/2 rows*), checked
# and measured like the others; this script stays for a quick look without namespaces: sticky (h2
# over TLS, pinned and first wave) beside HAProxy (cookie insert) and nginx (hash of a cookie) with h2
# on the same certificate, one worker/thread each pinned to CPU 1, h2load and the two `sticky whoami`
# backends on CPU 0. Traffic stays on 127.0.0.1; every run is bounded (h2load -n N); every process
# started here is stopped on exit. µs/request = the balancer's utime+stime over the run / N.
#   STICKY=target/release/sticky N=100000 bench/h2-loopback.sh
set -u
STICKY=${STICKY:-target/release/sticky}
STICKY=$(realpath "$STICKY")
N=${N:-100000}
D=$(mktemp -d /tmp/sticky-h2bench.XXXXXX)
cd $D
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout a.key -out a.crt -days 2 -subj /CN=a.test -addext subjectAltName=DNS:a.test 2>/dev/null
cat a.crt a.key > a.pem
head -c 32 /dev/urandom | base64 > cookie.key
pids=()
cleanup() { for p in "${pids[@]}"; do kill $p 2>/dev/null; done; wait 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
taskset -c 0 $STICKY whoami --listen 127.0.0.1:19001 --name b1 & pids+=($!)
taskset -c 0 $STICKY whoami --listen 127.0.0.1:19002 --name b2 & pids+=($!)
taskset -c 1 $STICKY run --listen 127.0.0.1:18080 --listen-tls 127.0.0.1:18443 --tls-cert a.crt --tls-key a.key \
  --backend b1=http://127.0.0.1:19001 --backend b2=http://127.0.0.1:19002 --workers 1 --cookie-key-file cookie.key & spid=$!; pids+=($spid)
cat > haproxy.cfg <<H
global
  nbthread 1
  maxconn 5000
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  http-reuse safe
frontend fe
  bind 127.0.0.1:28443 ssl crt $D/a.pem alpn h2,http/1.1
  default_backend be
backend be
  cookie SRV insert indirect nocache
  server b1 127.0.0.1:19001 cookie b1
  server b2 127.0.0.1:19002 cookie b2
H
taskset -c 1 haproxy -f haproxy.cfg -db & hpid=$!; pids+=($hpid)
mkdir -p ngx
cat > ngx/nginx.conf <<X
worker_processes 1;
daemon off;
pid $D/ngx/nginx.pid;
error_log $D/ngx/error.log warn;
events { worker_connections 10000; }
http {
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path $D/ngx; proxy_temp_path $D/ngx; fastcgi_temp_path $D/ngx; uwsgi_temp_path $D/ngx; scgi_temp_path $D/ngx;
  upstream be { hash \$cookie_sid consistent; server 127.0.0.1:19001; server 127.0.0.1:19002; keepalive 64; }
  server {
    listen 127.0.0.1:38443 ssl http2;
    ssl_certificate $D/a.crt; ssl_certificate_key $D/a.key;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
X
taskset -c 1 nginx -c $D/ngx/nginx.conf & npid=$!; pids+=($npid)
sleep 1.5
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
tck=$(getconf CLK_TCK)
nginx_worker() { pgrep -P $npid | head -1; }
run() { # name pid port extra-args...
  local name=$1 pid=$2 port=$3; shift 3
  local before=$(cpu $pid)
  local out=$(taskset -c 0 h2load -n $N -c 10 -m 10 --connect-to=127.0.0.1:$port "$@" https://a.test:$port/ 2>&1)
  local after=$(cpu $pid)
  local ok=$(echo "$out" | grep -o '[0-9]* succeeded' | head -1 | cut -d' ' -f1)
  local rps=$(echo "$out" | grep -o 'finished in [^,]*, [0-9.]* req/s' | sed 's/.*, //')
  local proto=$(echo "$out" | grep -o 'Application protocol: [a-z0-9]*' | cut -d' ' -f3)
  echo "$name proto=$proto succeeded=$ok $rps cpu_us_per_req=$(echo "scale=2; ($after-$before)*1000000/$tck/$N" | bc)"
}
scookie=$(curl -s -k --http2 -D - -o /dev/null --resolve a.test:18443:127.0.0.1 https://a.test:18443/ | grep -i '^set-cookie' | sed 's/^[^:]*: //; s/;.*//' | tr -d '\r')
echo "sticky cookie: $scookie"
for round in 1 2; do
  run sticky-h2-pinned $spid 18443 -H "cookie: $scookie"
  run sticky-h2-firstwave $spid 18443
  run haproxy-h2-pinned $hpid 28443 -H "cookie: SRV=b1"
  run haproxy-h2-new $hpid 28443
  run nginx-h2-pinned $(nginx_worker) 38443 -H "cookie: sid=abc"
done

# Rendered by regdeploy (templates/apply-haproxy.sh.j2): the load balancer's new configuration, checked
# by haproxy before it replaces the old one, then loaded without dropping connections (a reload hands
# the listening sockets to the new process). A refused file changes nothing.
set -u
path=/etc/haproxy/haproxy.cfg
staged="$path.regdeploy-new"
umask 022
cat > "$staged" <<'REGDEPLOY_FILE'
# Rendered by regdeploy (templates/haproxy.cfg.j2) on the registry_lb host; changes here are overwritten.
# One address for clients (5000), the registry replicas behind it. A replica that stops answering
# GET /v2/ is out within 1 s; a request it could not take is sent again, to another.
global
    log /dev/log local0
    chroot /var/lib/haproxy
    user haproxy
    group haproxy
    maxconn 4096
    stats socket /run/haproxy/admin.sock mode 600 level admin

defaults
    log global
    timeout connect 2s
    # Pushes and pulls of large layers stream for minutes.
    timeout client 10m
    timeout server 10m
    timeout check 2s
    retries 3
    option redispatch 1
    mode http
    option httplog
    # A replica that refused the connection, closed it unanswered or was unavailable: resend the
    # request to another (haproxy resends only requests it still holds whole, never a large upload).
    retry-on conn-failure empty-response 503

frontend registry
    bind :5000
    default_backend registry_replicas

backend registry_replicas
    balance roundrobin
    # 401: a registry with accounts answers /v2/ so.
    option httpchk GET /v2/
    http-check expect rstatus ^(200|401)$
    server reg1 reg1:5000 check inter 500ms fall 2 rise 2
    server reg2 reg2:5000 check inter 500ms fall 2 rise 2

# Read-only status page: a replica being replaced waits here until it is UP again.
frontend stats
    mode http
    bind :8404
    stats enable
    stats uri /stats
    stats refresh 5s
REGDEPLOY_FILE
if ! haproxy -c -q -f "$staged" >&2; then
    rm -f "$staged"
    echo "regdeploy: haproxy refused the new configuration; $path is unchanged" >&2
    exit 1
fi
chown root:root "$staged" && chmod 644 "$staged" && mv -f "$staged" "$path" || exit 1
systemctl enable haproxy >/dev/null 2>&1 || { echo "regdeploy: could not enable haproxy" >&2; exit 1; }
systemctl reload-or-restart haproxy || { echo "regdeploy: haproxy did not take the configuration" >&2; exit 1; }
# Up once its status page answers (the reload is asynchronous).
i=0
until curl -fsS -o /dev/null http://127.0.0.1:8404/stats; do
    i=$((i + 1))
    if [ "$i" -ge 150 ]; then
        echo "regdeploy: haproxy's status page (port 8404) did not answer within 30 s" >&2
        systemctl status haproxy --no-pager >&2
        exit 1
    fi
    sleep 0.2
done
echo "regdeploy: haproxy runs the new configuration"

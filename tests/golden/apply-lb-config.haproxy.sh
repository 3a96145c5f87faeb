# Rendered by regdeploy (templates/apply-lb-config.sh.j2): a load balancer's haproxy configuration,
# checked by haproxy before it replaces the old one, then loaded without dropping connections (a
# reload keeps the listening sockets, or the address it holds), and the service started at boot. A
# refused file changes nothing. Also what starts a service stopped or disabled by hand.
set -u
path=/etc/haproxy/haproxy.cfg
staged="$path.regdeploy-new"
umask 022
mkdir -p "${path%/*}" || exit 1
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
    # A replica that refused the connection, closed it unanswered, was unavailable or did not answer a
    # short request in time: resend the request to another (haproxy resends only requests it still
    # holds whole, never a large upload).
    retry-on conn-failure empty-response response-timeout 503

frontend registry
    bind :5000
    default_backend registry_replicas

backend registry_replicas
    balance roundrobin
    # 401: a registry with accounts answers /v2/ so.
    option httpchk GET /v2/
    http-check expect rstatus ^(200|401)$
    # A replica whose machine died answers nothing, not even a reset: what it was sent would wait for
    # `timeout server`. A read it has not begun to answer goes to another replica (retry-on
    # response-timeout): a short one (any HEAD; a GET of a manifest, a tag list or the API check) after
    # 5s, a layer after 15s (also how long a layer may stall before it ends, and the
    # client fetches it again). Writes keep the long timeout: committing a large upload may take a while.
    acl short_path path_reg ^/v2/(.+/(manifests|tags)/[^/]+)?$
    http-request set-timeout server 15s if METH_GET
    http-request set-timeout server 5s if METH_HEAD || METH_GET short_path
    server reg1 reg1:5000 check inter 500ms fall 2 rise 2
    server reg2 reg2:5000 check inter 500ms fall 2 rise 2

# Status page: a replica being replaced sets itself to drain here (no new requests, the ones it serves
# finish), back to ready once it answers, and waits until it is UP again. Only the replicas may change a
# state; to everyone else the page is read-only.
frontend stats
    mode http
    bind :8404
    stats enable
    stats uri /stats
    stats refresh 5s
    acl replica src reg1 reg2
    stats admin if replica
REGDEPLOY_FILE
haproxy -c -q -f "$staged" >&2
checked=$?
if [ "$checked" -ne 0 ]; then
    rm -f "$staged"
    echo "regdeploy: haproxy refused the new configuration; $path is unchanged" >&2
    exit 1
fi
# On disk before it takes the name: a power cut right after this run leaves the old file or the
# new one, never an empty one (the rename may reach the disk before the data otherwise).
chown root:root "$staged" && chmod 644 "$staged" && sync "$staged" && mv -f "$staged" "$path" || exit 1
systemctl enable haproxy >/dev/null 2>&1 || {
    echo "regdeploy: could not enable haproxy (masked? \`systemctl unmask haproxy\` if it should run)" >&2; exit 1; }
systemctl reload-or-restart haproxy || { echo "regdeploy: haproxy did not take the configuration" >&2; exit 1; }
# Up once it answers http://127.0.0.1:8404/stats (the reload is asynchronous).
i=0
until curl -fsS -o /dev/null http://127.0.0.1:8404/stats; do
    i=$((i + 1))
    if [ "$i" -ge 150 ]; then
        echo "regdeploy: haproxy did not answer http://127.0.0.1:8404/stats within 30 s" >&2
        systemctl status haproxy --no-pager >&2
        exit 1
    fi
    sleep 0.2
done
echo "regdeploy: haproxy runs the new configuration"

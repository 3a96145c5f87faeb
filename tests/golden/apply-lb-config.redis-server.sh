# Rendered by regdeploy (templates/apply-lb-config.sh.j2): a load balancer's redis-server configuration,
# checked by redis-server before it replaces the old one, then loaded without dropping connections (a
# reload keeps the listening sockets, or the address it holds), and the service started at boot. A
# refused file changes nothing. Also what starts a service stopped or disabled by hand.
set -u
path=/etc/redis/redis.conf
staged="$path.regdeploy-new"
umask 022
mkdir -p "${path%/*}" || exit 1
cat > "$staged" <<'REGDEPLOY_FILE'
# Rendered by regdeploy (templates/redis.conf.j2) on a registry_lb host (registry_lb_cache); changes here
# are overwritten. The blob-descriptor cache the registry replicas share: which layers exist and their
# sizes, so a replica answers without asking the bucket. A cache, nothing more: nothing is kept on disk
# (a restart starts it empty), the least recently used entries make room, and the replicas go to the
# bucket when it does not answer. The password (derived from the replicas' http.secret) is in /etc/redis/regdeploy-auth.conf.
bind 0.0.0.0 -::*
port 6379
protected-mode yes
include /etc/redis/regdeploy-auth.conf
supervised systemd
daemonize no
pidfile /run/redis/redis-server.pid
loglevel notice
logfile ""
databases 1
save ""
appendonly no
maxmemory 256mb
maxmemory-policy allkeys-lru
tcp-keepalive 60
dir /var/lib/redis
REGDEPLOY_FILE
# redis-server has no check of a configuration file: whether it starts with it is the check.
# On disk before it takes the name: a power cut right after this run leaves the old file or the
# new one, never an empty one (the rename may reach the disk before the data otherwise).
chown root:root "$staged" && chmod 644 "$staged" && sync "$staged" && mv -f "$staged" "$path" || exit 1
systemctl enable redis-server >/dev/null 2>&1 || {
    echo "regdeploy: could not enable redis-server (masked? \`systemctl unmask redis-server\` if it should run)" >&2; exit 1; }
systemctl reload-or-restart redis-server || { echo "regdeploy: redis-server did not take the configuration" >&2; exit 1; }
systemctl is-active --quiet redis-server || { echo "regdeploy: redis-server is not running" >&2; systemctl status redis-server --no-pager >&2; exit 1; }
echo "regdeploy: redis-server runs the new configuration"

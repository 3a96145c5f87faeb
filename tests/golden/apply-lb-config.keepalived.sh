# Rendered by regdeploy (templates/apply-lb-config.sh.j2): a load balancer's keepalived configuration,
# checked by keepalived before it replaces the old one, then loaded without dropping connections (a
# reload keeps the listening sockets, or the address it holds), and the service started at boot. A
# refused file changes nothing. Also what starts a service stopped or disabled by hand.
set -u
path=/etc/keepalived/keepalived.conf
staged="$path.regdeploy-new"
umask 022
mkdir -p "${path%/*}" || exit 1
cat > "$staged" <<'REGDEPLOY_FILE'
# Rendered by regdeploy (templates/keepalived.conf.j2) on the registry_lb host lb1; changes here
# are overwritten. The load balancers share 10.0.0.100/24: the one whose haproxy answers and that holds it
# keeps it; when it dies (no advertisement for 3 s) or its haproxy stops answering, another
# takes it and announces it (gratuitous ARP). VRRP goes unicast to the other load balancers.
global_defs {
    router_id lb1
    enable_script_security
    script_user nobody nogroup
}

vrrp_script haproxy_answers {
    script "/usr/bin/curl -fsS -o /dev/null -m 1 http://127.0.0.1:8404/stats"
    interval 1
    timeout 2
    fall 2
    rise 2
}

vrrp_instance registry {
    state BACKUP
    nopreempt
    interface eth0
    virtual_router_id 51
    priority 200
    advert_int 1
    unicast_src_ip 10.0.0.11
    unicast_peer {
        10.0.0.12
    }
    virtual_ipaddress {
        10.0.0.100/24 dev eth0
    }
    track_script {
        haproxy_answers
    }
    # registry_lb_cache: this host's cache is emptied each time it takes the address or gives it up, so
    # only the holder's holds anything, and only what was cached since it took it (run as root: the
    # cache's password is root's and redis's only).
    notify_master "/usr/local/sbin/regdeploy-flush-blob-cache" root
    notify_backup "/usr/local/sbin/regdeploy-flush-blob-cache" root
    notify_fault "/usr/local/sbin/regdeploy-flush-blob-cache" root
}
REGDEPLOY_FILE
keepalived --config-test -f "$staged" >&2
checked=$?
# keepalived's check passes with 0 143 (keepalived 2.2 ends a passed check with SIGTERM to itself).
if [ "$checked" -ne 0 ] && [ "$checked" -ne 143 ]; then
    rm -f "$staged"
    echo "regdeploy: keepalived refused the new configuration; $path is unchanged" >&2
    exit 1
fi
# On disk before it takes the name: a power cut right after this run leaves the old file or the
# new one, never an empty one (the rename may reach the disk before the data otherwise).
chown root:root "$staged" && chmod 644 "$staged" && sync "$staged" && mv -f "$staged" "$path" || exit 1
systemctl enable keepalived >/dev/null 2>&1 || {
    echo "regdeploy: could not enable keepalived (masked? \`systemctl unmask keepalived\` if it should run)" >&2; exit 1; }
systemctl reload-or-restart keepalived || { echo "regdeploy: keepalived did not take the configuration" >&2; exit 1; }
systemctl is-active --quiet keepalived || { echo "regdeploy: keepalived is not running" >&2; systemctl status keepalived --no-pager >&2; exit 1; }
echo "regdeploy: keepalived runs the new configuration"

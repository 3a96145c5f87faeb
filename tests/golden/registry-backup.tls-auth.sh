# Rendered by regdeploy (templates/registry-backup.sh.j2), run on the registry server by
# `regdeploy backup`: a consistent copy of the registry's storage, written to stdout as a tar
# (regdeploy-manifests.txt first: every tag and its digest, then the storage tree). The registry
# is read-only meanwhile (pulls work, pushes are refused); its config.yml is put back however the
# script ends. Messages go to stderr: stdout is the archive.
set -u
REFUSED=6  # exit status of a refusal for safety (registry_files.REFUSED)
name=registry
config=/etc/regdeploy/config.yml
data=/var/lib/registry
# Included by regdeploy's scripts (templates/deploy-lock.sh.j2): the host's deploy lock.
# It belongs to the SSH connection that took it (its sshd process, by pid and start time): held for
# as long as that connection lives, free once it ends, however it ends (finished, killed, network
# gone), so no run ever has to clean up after another; a script that ends before its connection
# does calls release_deploy_lock. take_deploy_lock waits up to
# 600 s; on failure $lock_holder says who holds it. Without an sshd ancestor (run by
# systemd: the scheduled garbage collection) the lock is tied to this script's own shell instead.
lock=/run/regdeploy.lock
waited=0
lock_holder=
# proc_stat PID: its parent ($ppid) and start time ($started_at), from the fields of /proc/PID/stat
# after the command name (which may hold spaces), read with shell builtins: every deploy takes the
# lock first on every host, and a process per field adds up over a fleet sharing its cores.
proc_stat() {
    line=
    { read -r line < /proc/"$1"/stat; } 2>/dev/null || return 1
    # shellcheck disable=SC2086 # split on purpose: the fields of /proc/PID/stat after the name
    set -- ${line##*) }
    [ $# -ge 20 ] || return 1
    ppid=$2
    shift 19
    started_at=$1
}
take_deploy_lock() {
    session=$$
    while [ "$session" -gt 1 ]; do
        comm=
        { read -r comm < /proc/"$session"/comm; } 2>/dev/null
        case "$comm" in sshd*) break ;; esac
        if [ "$session" = $$ ]; then session=$PPID  # the shell knows its own parent
        elif proc_stat "$session"; then session=$ppid; else session=1; fi
    done
    [ "$session" -gt 1 ] || session=$$
    proc_stat "$session"
    me="$session $started_at"
    until try_deploy_lock; do
        if [ "$waited" -ge 600 ]; then
            lock_holder=$(cut -d' ' -f3- "$lock")
            return 1
        fi
        waited=$((waited + 1))
        sleep 1
    done
}

# try_deploy_lock: one attempt, under an flock of $lock.guard on descriptor 9, opened in this shell
# (a subshell per attempt costs a process on every host of every run) and closed after: closing the
# last descriptor of the file releases the flock.
try_deploy_lock() {
    { command exec 9>>"$lock.guard"; } 2>/dev/null || return 1
    flock -x 9
    if [ -s "$lock" ]; then
        read -r lock_pid lock_started _ < "$lock"
        if [ "$lock_pid $lock_started" = "$me" ]; then exec 9>&-; return 0; fi
        # Held while the holder's connection lives (same pid, same start time).
        if proc_stat "$lock_pid" && [ "$started_at" = "$lock_started" ]; then exec 9>&-; return 1; fi
    fi
    printf '%s %s\n' "$me" 'regdeploy test on ctl (pid 1, started 00:00:00)' > "$lock"
    set -- $?  # not taken if it could not be written
    exec 9>&-
    return "$1"
}

# release_deploy_lock: let the next run in now (only a lock this connection holds).
release_deploy_lock() {
    [ -n "${me:-}" ] || return 0
    (
        flock -x 9
        read -r pid started _ < "$lock" 2>/dev/null
        [ "$pid $started" = "$me" ] && : > "$lock"
    ) 9>>"$lock.guard"
}

# Included by regdeploy's scripts (templates/registry-api.sh.j2): shell functions over the registry
# API, with curl. `base` is the URL clients use (so a TLS certificate's name checks out), and curl
# connects to "$target" instead: the registry on this host's loopback (a caller may point it at
# another port). CA and credentials come from files (regdeploy.registry_files): no secret is ever
# on a command line. The user agent says regdeploy: its requests are not pulls (retention's
# `pulled=` reads the access log).
base=https://reg1:5000
target=127.0.0.1:5000
api_curl() { curl -A regdeploy --connect-to reg1:5000:"$target" --cacert /etc/docker/certs.d/reg1:5000/ca.crt --config /etc/regdeploy/api-credentials "$@"; }

# walk PATH: every entry of a paginated list (/v2/_catalog, /v2/NAME/tags/list), one per line,
# following the API's pagination (n, last, Link: rel="next"). Names and tags cannot contain
# quotes, commas or brackets (Docker's grammar), so the JSON array splits safely.
walk() {
    next="$1?n=100"
    while [ -n "$next" ]; do
        response=$(api_curl -fsS -D - "$base$next") || return 1
        response=$(printf '%s\n' "$response" | tr -d '\r')
        printf '%s\n' "$response" | sed '1,/^$/d' | grep -o '\[[^]]*\]' | tr -d '[]" ' | tr ',' '\n' | sed '/^$/d'
        next=$(printf '%s\n' "$response" | sed -n '1,/^$/ s/^[Ll]ink: *<\([^>]*\)>.*rel="next".*/\1/p')
    done
}

# manifests: "NAME TAG DIGEST" for every tag the registry serves, sorted: what a move of its data
# must keep exactly. The digest is the registry's own (Docker-Content-Digest of the manifest).
manifests() {
    repositories=$(walk /v2/_catalog) || return 1
    listing=""
    for repository in $repositories; do
        tags=$(walk "/v2/$repository/tags/list") || return 1
        for tag in $tags; do
            digest=$(api_curl -fsSI \
                -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
                -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json' \
                -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
                -H 'Accept: application/vnd.oci.image.index.v1+json' \
                "$base/v2/$repository/manifests/$tag" | tr -d '\r' \
                | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: *//p')
            [ -n "$digest" ] || return 1
            listing="$listing$repository $tag $digest
"
        done
    done
    printf '%s' "$listing" | sort
}

# wait_ready SECONDS: until GET $base/v2/ answers, polling every 0.05 s (a new registry container
# answers moments after `docker run` returns, and a deploy or a backup waits for this).
wait_ready() {
    i=0
    until api_curl -fsS -o /dev/null "$base/v2/" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -lt $(($1 * 20)) ] || return 1
        sleep 0.05
    done
}

say() { echo "regdeploy: $*" >&2; }
now() { date +%s.%N; }

# Included by regdeploy's scripts that need the registry read-only for a while (templates/
# registry-readonly.sh.j2: `regdeploy backup`, `regdeploy gc` and its timer). It takes the host's
# deploy lock, checks the registry answers and saves its config.yml in $work. enter_readonly puts
# the read-only config.yml in place (in place: the container mounts this very file) and restarts the
# registry; put_back restores the saved one and restarts it; both wait until it answers, and hold
# new connections meanwhile (registry-hold.sh.j2), so a pull waits instead of failing. Interrupted,
# the script puts config.yml back. Needs say(), $name and $config.
# Included by regdeploy's scripts that restart the registry (templates/registry-hold.sh.j2): while
# it restarts, a client's new connection waits instead of being refused. hold_connections drops the
# first packet (SYN) of each new TCP connection that reaches port 5000 of this host from
# outside, in the raw table, before Docker forwards the port; connections already open go on. The
# client's kernel sends its SYN again 1 s later, then after 2, 4, 8 s..., and gets through once
# release_connections has removed the rule. So a pull begun during the restart is slower, not
# failed. Loopback is not held: wait_ready reaches the new registry over it.
# Each rule expires by itself 120 s after it was added (iptables' time match): a
# script killed while holding cannot leave the registry closed. Without iptables, or if it refuses
# the rule, the restart goes on unheld (new connections are refused for a moment) and says so.
# Needs say().
held=""
# hold_rule COMMAND -I|-D UNTIL: insert or delete the rule (UNTIL: its expiry, UTC).
hold_rule() {
    "$1" -w 5 -t raw "$2" PREROUTING ! -i lo -p tcp --dport 5000 --syn -m addrtype --dst-type LOCAL \
        -m time --datestop "$3" -m comment --comment "regdeploy: hold new connections while the registry restarts" \
        -j DROP
}
hold_connections() {
    hold_until=$(date -u -d "@$(($(date +%s) + 120))" +%Y-%m-%dT%H:%M:%S) || return 0
    hold_added=""
    for hold_command in iptables ip6tables; do
        command -v "$hold_command" >/dev/null 2>&1 || continue
        if hold_rule "$hold_command" -I "$hold_until" 2>/dev/null; then
            hold_added="$hold_added $hold_command@$hold_until"
        fi
    done
    [ -n "$hold_added" ] || say "could not hold new connections to port 5000 (iptables missing or refused): they are refused while the registry restarts"
    held="$held$hold_added"
}
release_connections() {
    for hold_entry in $held; do
        hold_rule "${hold_entry%@*}" -D "${hold_entry#*@}" \
            || say "could not remove the hold on port 5000 (${hold_entry%@*}): it expires by itself at ${hold_entry#*@} UTC"
    done
    held=""
}
# restart_held: docker restart of $name with new connections held until it answers again.
restart_held() {
    hold_connections
    restart_status=0
    { docker restart -t 10 "$name" >/dev/null && wait_ready 60; } || restart_status=$?
    release_connections
    return "$restart_status"
}

take_deploy_lock || { say "another regdeploy run holds this host's deploy lock ($lock_holder); waited $waited s"; exit "$REFUSED"; }
trap release_deploy_lock EXIT
docker container inspect "$name" >/dev/null 2>&1 || { say "no container $name on this host: deploy the registry first"; exit 1; }
wait_ready 60 || { say "the registry does not answer on $base"; exit 1; }
work=$(mktemp -d) || exit 1
cp -p "$config" "$work/config.yml" || { rm -rf "$work"; exit 1; }
# Both write config.yml in place and flush it before the restart: what the registry runs is what a
# power cut leaves on disk.
enter_readonly() {
    cat > "$config" <<'REGDEPLOY_READONLY_CONFIG'
# Rendered by regdeploy (templates/registry-config.yml.j2); changes here are overwritten.
# Paths are inside the container: the host's /var/lib/registry is mounted on /var/lib/registry.
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  # The DELETE API (registry_allow_delete); garbage collection does not need it.
  delete:
    enabled: false
  # `regdeploy backup` only, for the length of the copy: pulls work, pushes and deletes are refused.
  maintenance:
    readonly:
      enabled: true
http:
  addr: :5000
  # registry_tls: the host's /etc/regdeploy/tls is mounted on /certs.
  tls:
    certificate: /certs/registry.crt
    key: /certs/registry.key
  headers:
    X-Content-Type-Options: [nosniff]
  # The debug endpoint: /debug/health and Prometheus /metrics. Published on the server's loopback
  # only, unless registry_metrics_port publishes it.
  debug:
    addr: :5001
    prometheus:
      enabled: true
      path: /metrics
# registry_auth: the host's /etc/regdeploy/auth is mounted on /auth; the registry re-reads the
# file when it changes, so a new user or password needs no restart.
auth:
  htpasswd:
    realm: regdeploy
    path: /auth/htpasswd
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
REGDEPLOY_READONLY_CONFIG
    sync "$config"
    restart_held
}
put_back() {
    cat "$work/config.yml" > "$config" && sync "$config" && restart_held
}
trap 'put_back; rm -rf "$work"; exit 1' INT TERM HUP


start=$(now)
if ! enter_readonly; then
    put_back; rm -rf "$work"; say "the registry did not come back in read-only mode: nothing was copied"; exit 1
fi
manifests > "$work/regdeploy-manifests.txt" || { put_back; rm -rf "$work"; say "could not list the registry's content"; exit 1; }
tar -cf - -C "$work" regdeploy-manifests.txt -C "$data" . || { put_back; rm -rf "$work"; say "tar of $data failed"; exit 1; }
put_back || { rm -rf "$work"; say "could not put $config back: run the deploy to restore it"; exit 1; }
rm -rf "$work"
trap - INT TERM HUP
say "read-only window: $(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s"

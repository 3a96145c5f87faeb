# Rendered by regdeploy (templates/replica-maintenance.sh.j2), run on one registry replica by
# `regdeploy gc` and `prune` on shared S3 storage: step "writable". The regdeploy command runs the
# steps in order on one SSH connection per replica, whose deploy lock each step takes (the same
# connection holds it: no deploy runs on a replica between two steps), and ends the connections last:
#   list      (one replica) what the bucket holds, for the retention rules (storage.sh.j2's format);
#   pulls     (each replica, for a rule with pulled=) what its access log says was pulled;
#   readonly  (each replica in turn) drained on every load balancer, switched to read-only (the config
#             on stdin), back in the load balancers once they see it UP: pulls go on, pushes are refused;
#   collect   (one replica, once every replica is read-only) the rules' deletions and the collector,
#             against the bucket; every tag must then be served with the digest it had;
#   writable  (each replica in turn) drained, its own config.yml back, UP again.
# Messages go to stderr; stdout is the step's result (the listing, or collect's JSON report).
set -u
REFUSED=6  # exit status of a refusal for safety (registry_files.REFUSED)
name=registry
config=/etc/regdeploy/config.yml
# The replica's own config.yml while it is read-only (written by readonly, put back by writable).
saved=/etc/regdeploy/config.yml.regdeploy-writable
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
base=http://10.0.0.100:5000
target=127.0.0.1:5000
api_curl() { curl -A regdeploy --connect-to 10.0.0.100:5000:"$target"  "$@"; }

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

say() { echo "regdeploy: reg1: $*" >&2; }
now() { date +%s.%N; }
take_deploy_lock || { say "another regdeploy run holds this host's deploy lock ($lock_holder); waited $waited s"; exit "$REFUSED"; }
docker container inspect "$name" >/dev/null 2>&1 || { say "no container $name on this host: deploy the registry first"; exit 1; }
# Included by regdeploy's scripts that take a replica out of the load balancers and back
# (templates/lb-replica.sh.j2: the deploy's replacement, gc and prune on replicas).
# Their status pages: http://10.0.0.11:8404/stats, http://10.0.0.12:8404/stats; this replica is reg1 in backend registry_replicas.
lb_pages='http://10.0.0.11:8404/stats http://10.0.0.12:8404/stats'
# lb_field N: field N of this replica's row on every load balancer's status page (CSV), one line each;
# "?" where a page or the row does not answer.
lb_field() {
    for page in $lb_pages; do
        curl -fsS "$page;csv" 2>/dev/null \
            | awk -F, -v b=registry_replicas -v s=reg1 -v f="$1" '$1 == b && $2 == s {print $f == "" ? "?" : $f; n++} END {if (!n) print "?"}'
    done
}
# lb_status: this replica's state on every load balancer, one word each (UP, DOWN, DRAIN, MAINT...).
lb_status() { lb_field 18; }
# lb_set STATE: set this replica to STATE (drain, ready) on every load balancer, through its status
# page's admin form, which answers with a redirect whose ";st=" says DONE or why not.
lb_set() {
    for page in $lb_pages; do
        answer=$(curl -sS -o /dev/null -w '%{redirect_url}' -d 'b=registry_replicas&s=reg1&action='"$1" "$page")
        case "$answer" in
            *";st=DONE"*) ;;
            *) echo "regdeploy: the load balancer at $page did not set reg1 to $1 (${answer:-no answer})" >&2; return 1 ;;
        esac
    done
}
# lb_sessions: the requests the load balancers have open on this replica, all of them together.
lb_sessions() { lb_field 5 | awk '{n += $1} END {print n + 0}'; }
# lb_drain: no new request for this replica from the load balancers; the ones it serves finish (up to
# 20 s). Fails, changing nothing more, if a load balancer does not take the drain.
lb_drain() {
    lb_set drain || return 1
    i=0
    until [ "$(lb_sessions)" = 0 ] || [ "$i" -ge $((20 * 5)) ]; do
        i=$((i + 1))
        sleep 0.2
    done
    say "drained on every load balancer ($(lb_sessions) requests still open)"
}
# lb_wait_up: until every load balancer's health checks send this replica requests again (their status
# pages say UP), at most 60 s.
lb_wait_up() {
    i=0
    until ! lb_status | grep -qv '^UP'; do
        i=$((i + 1))
        [ "$i" -lt $((60 * 5)) ] || return 1
        sleep 0.2
    done
}


# switch FILE: config.yml from FILE, the registry restarted out of the load balancers' sight, back in
# them once it answers and they see it UP.
switch() {
    if ! lb_drain; then
        lb_set ready; say "not every load balancer drained it: it was left as it was"; return 1
    fi
    if ! { cat "$1" > "$config" && sync "$config" && docker restart -t 20 "$name" >/dev/null && wait_ready 60; }; then
        say "the registry did not answer after its restart (docker logs $name)"; return 1
    fi
    if ! { lb_set ready && lb_wait_up; }; then
        say "not every load balancer sends it requests again ($(lb_status | tr '\n' ' '))"; return 1
    fi
}

if [ ! -e "$saved" ]; then
    say "already writable"
    exit 0
fi
switch "$saved" || { say "could not put $config back: run the deploy to restore it"; exit 1; }
rm -f "$saved"
say "writable again"

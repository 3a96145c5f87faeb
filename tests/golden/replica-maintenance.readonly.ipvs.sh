# Rendered by regdeploy (templates/replica-maintenance.sh.j2), run on one registry replica by
# `regdeploy gc` and `prune` on shared S3 storage: step "readonly". The regdeploy command runs the
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
base=https://10.0.0.100:5000
target=127.0.0.1:5000
api_curl() { curl -A regdeploy --connect-to 10.0.0.100:5000:"$target" --cacert /etc/docker/certs.d/10.0.0.100:5000/ca.crt "$@"; }

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
# registry_lb_mode=ipvs: the load balancers (10.0.0.11, 10.0.0.12) check this replica every second.
# While it refuses their checks (a REJECT for their addresses only) they give it weight 0: no new
# connection comes, the open ones carry on. It cannot read their tables: it counts the checks its
# REJECT refused (each load balancer's first one sets the weight); back, it counts the checks it
# answers (a rule without a target, counting their SYNs) the same way.
lb_pages='10.0.0.11 10.0.0.12'
lb_ports=5000
# lb_rule -C|-I|-D CHAIN SOURCE PORT REJECT|COUNT: check, insert or delete the REJECT of SOURCE's
# connections to PORT, or the rule counting them (INPUT: a port the host serves; DOCKER-USER, by the
# port before Docker's DNAT: a published one).
lb_rule() {
    rule_action=$1 rule_chain=$2 rule_source=$3 rule_port=$4
    if [ "$5" = REJECT ]; then
        set -- -j REJECT --reject-with tcp-reset
    else
        set -- --syn -m comment --comment regdeploy-lb-check
    fi
    if [ "$rule_chain" = INPUT ]; then
        iptables -w "$rule_action" INPUT -s "$rule_source" -p tcp --dport "$rule_port" "$@"
    else
        iptables -w "$rule_action" DOCKER-USER -s "$rule_source" -p tcp -m conntrack --ctorigdstport "$rule_port" "$@"
    fi
}
# lb_rules add|remove|any REJECT|COUNT: every load balancer's connections to the registry's ports
# rejected (or counted), none, or whether any is.
lb_rules() {
    chains=INPUT
    if iptables -w -n -L DOCKER-USER >/dev/null 2>&1; then chains="INPUT DOCKER-USER"; fi
    for chain in $chains; do
        for source in $lb_pages; do
            for port in $lb_ports; do
                case "$1" in
                    add) lb_rule -C "$chain" "$source" "$port" "$2" 2>/dev/null || lb_rule -I "$chain" "$source" "$port" "$2" || return 1 ;;
                    remove) while lb_rule -C "$chain" "$source" "$port" "$2" 2>/dev/null; do
                                lb_rule -D "$chain" "$source" "$port" "$2" || return 1
                            done ;;
                    any) ! lb_rule -C "$chain" "$source" "$port" "$2" 2>/dev/null || return 0 ;;
                esac
            done
        done
    done
    [ "$1" != any ]
}
lb_reject() { lb_rules "$1" REJECT; }
# lb_status: what this replica knows of the load balancers: whether it refuses their checks.
lb_status() { if lb_reject any; then echo "drained"; else echo "checked"; fi; }
# lb_set drain|ready: refuse the load balancers' checks, or answer them again.
lb_set() {
    case "$1" in
        drain) lb_reject add || { echo "regdeploy: could not reject the load balancers' checks of reg1" >&2; return 1; } ;;
        ready) lb_reject remove || { echo "regdeploy: could not end the REJECT of the load balancers' checks of reg1" >&2; return 1; } ;;
    esac
}
# lb_sessions: the connections the registry container has open (the clients', through the load balancers).
lb_sessions() {
    pid=$(docker inspect -f '{{.State.Pid}}' "$name" 2>/dev/null) || { echo 0; return; }
    nsenter -t "$pid" -n ss -Htn state established "( sport = :5000 )" 2>/dev/null | wc -l
}
# lb_drain: no new connection for this replica once every load balancer saw the refusal; the ones it
# has finish (up to 20 s). Fails, changing nothing more, if the rules cannot be set.
# lb_counted MATCH SOURCE: the packets SOURCE sent through the rules whose line holds MATCH ("-j REJECT":
# the checks the drain refused; "regdeploy-lb-check": the SYNs counted), INPUT and DOCKER-USER together,
# on the port with the fewest: each of the registry's ports has its own check.
lb_counted() {
    { iptables -w -S INPUT -v; iptables -w -S DOCKER-USER -v 2>/dev/null; } \
        | awk -v pattern="$1" -v s="-s $2/32 " -v ports="$lb_ports" '
            index($0, s) && index($0, pattern) {
                # "-c PACKETS BYTES": last, or before the target
                for (f = 1; f < NF; f++) if ($f == "-c") c = $(f + 1); else if ($f == "--dport" || $f == "--ctorigdstport") port = $(f + 1)
                n[port] += c
            }
            END {
                k = split(ports, p, " "); least = -1
                for (i = 1; i <= k; i++) if (least < 0 || n[p[i]] + 0 < least) least = n[p[i]] + 0
                print least < 0 ? 0 : least
            }'
}
# lb_await MATCH WHAT: until `lb_counted MATCH SOURCE` is above 0 for every load balancer, then 1 s for
# what its checks decided. All of them together wait 20 s at most: one whose count stays at 0
# may be down, and is said ("the load balancer SOURCE WHAT").
lb_await() {
    i=0
    for source in $lb_pages; do
        until [ "$(lb_counted "$1" "$source")" -gt 0 ] || [ "$i" -ge 100 ]; do
            i=$((i + 1))
            sleep 0.2
        done
        [ "$(lb_counted "$1" "$source")" -gt 0 ] || say "the load balancer $source $2 in 20 s"
    done
    sleep 1
}
lb_drain() {
    lb_set drain || return 1
    # Each load balancer has tried a check since (refused: weight 0 at once).
    lb_await "-j REJECT" "tried no check"
    i=0
    until [ "$(lb_sessions)" = 0 ] || [ "$i" -ge $((20 * 5)) ]; do
        i=$((i + 1))
        sleep 0.2
    done
    say "drained on every load balancer ($(lb_sessions) connections still open)"
}
# lb_wait_up: every load balancer gives this replica new connections again at its first check that
# this replica answers: wait until each has opened one since, then 1 s for the answer. One that opens
# none in 20 s may be down (as in lb_drain): said, and the others are waited for.
lb_wait_up() {
    # From 0: rules an interrupted run left have counted checks from before.
    { lb_rules remove COUNT && lb_rules add COUNT; } || { echo "regdeploy: could not count the load balancers' checks of reg1" >&2; return 1; }
    lb_await regdeploy-lb-check "opened no check"
    lb_rules remove COUNT || { echo "regdeploy: could not remove the rules counting the load balancers' checks of reg1" >&2; return 1; }
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

wait_ready 60 || { say "the registry does not answer on $base"; exit 1; }
wanted=$(umask 077 && mktemp) || exit 1
trap 'rm -f "$wanted"' EXIT
cat > "$wanted"
# Its own config.yml is kept aside, unless an interrupted earlier run left it read-only with the
# writable one already there.
if ! { [ -e "$saved" ] && cmp -s "$config" "$wanted"; }; then
    if ! { cp -p "$config" "$saved.tmp" && sync "$saved.tmp" && mv "$saved.tmp" "$saved"; }; then
        say "could not keep $config aside"; exit 1
    fi
fi
if ! switch "$wanted"; then
    if switch "$saved"; then rm -f "$saved"; fi
    say "it is not read-only; nothing was collected"
    exit 1
fi
say "read-only"

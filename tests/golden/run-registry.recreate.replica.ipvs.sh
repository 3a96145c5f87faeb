# Rendered by regdeploy (templates/run-registry.sh.j2): recreate the registry container.
# One script, so that the order that keeps the registry's data safe cannot be split up: stop the
# current container, copy its data and verify the copy through the registry API, set the old
# container aside, start the new one, wait for GET /v2/, and put the old one back if the new one
# never answers. Old volumes and directories are never deleted.
set -u
name=registry
say() { echo "regdeploy: $*"; }
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

# Behind regdeploy's load balancers.
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

drained=0


# Where the current container goes: regdeploy's own is removed once the new one answers; one
# found there (not regdeploy's) is kept, stopped and never restarted, so its volume stays referenced.
aside=registry.aside
was_running=$(docker container inspect -f '{{.State.Running}}' "$name")
moved_aside=0
# fail MESSAGE: put the previous container back as it was, then stop the deploy on this host.
fail() {
    echo "regdeploy: $1" >&2
    if [ "$moved_aside" = 1 ]; then
        docker rm -f "$name" >/dev/null 2>&1
        docker rename "$aside" "$name" && docker update --restart=always "$name" >/dev/null
    fi
    if [ "$was_running" = true ] && docker start "$name" >/dev/null 2>&1; then
        echo "regdeploy: the previous container $name runs again, unchanged" >&2
    fi
    if [ "$drained" = 1 ] && lb_set ready; then
        echo "regdeploy: the load balancers send it requests again" >&2
    fi
    exit 1
}

# No new request for this replica from the load balancers; the ones it serves finish, then it stops.
drained=1
lb_drain || fail "could not set reg1 to drain on every load balancer; it was not stopped"

# Nothing may write while the data is copied; the port must be free for the new container.
docker stop -t 30 "$name" >/dev/null || fail "could not stop container $name"

docker rename "$name" "$aside" || fail "could not rename container $name to $aside"
moved_aside=1

docker run -d --name "$name" --restart always -p 5000:5000 \
    -p 127.0.0.1::5001 \
    -v /var/lib/registry:/var/lib/registry -v /etc/regdeploy/config.yml:/etc/docker/registry/config.yml:ro \
    -v /etc/regdeploy/tls:/certs:ro \
    --label regdeploy.spec-sha256=cccdb126c8d2d117e43a51c1a79e710d4eac252eb04d16f37c60fed7ca35cb7c registry:2 /etc/docker/registry/config.yml >/dev/null \
    || { docker rm -f "$name" >/dev/null 2>&1; fail "docker run of the registry container $name failed"; }
if ! wait_ready 60; then
    echo "regdeploy: the registry did not answer GET $base/v2/ (at $target) within 60 s;" \
         "last log lines of container $name:" >&2
    docker logs --tail 30 "$name" >&2
    fail "the new registry container never answered"
fi
# Its health on the debug endpoint (the storage driver check of config.yml's health section).
i=0
until debug=$(docker port "$name" 5001/tcp 2>/dev/null | head -n 1) && [ -n "$debug" ] \
        && curl -fsS -o /dev/null "http://$debug/debug/health" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -ge $((60 * 20)) ]; then
        curl -sS "http://$debug/debug/health" >&2
        fail "the new registry's /debug/health (at ${debug:-an unpublished port}) did not answer 200"
    fi
    sleep 0.05
done
docker rm "$aside" >/dev/null || say "could not remove the previous container $aside; remove it by hand"
drained=0
lb_set ready || { echo "regdeploy: the new registry container runs, but still refuses the load balancers' checks:" \
                       "delete the REJECT rules for $lb_pages (iptables -S INPUT; iptables -S DOCKER-USER)" >&2; exit 1; }
# Done once every load balancer checked this replica again (its weight back to 1), so the next
# replica is replaced only while this one serves.
if ! lb_wait_up; then
    echo "regdeploy: the new registry container runs and answers the load balancers' checks again; stopping here, so that no other replica is replaced" >&2
    exit 1
fi
say "every load balancer sends reg1 requests"


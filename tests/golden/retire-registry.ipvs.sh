# Rendered by regdeploy (templates/retire-registry.sh.j2): this host is no longer a registry replica.
# The load balancers no longer send it requests (their configuration, written first, lists the
# replicas). Its registry container stops, finishing what it serves, and stays with restart policy no;
# nothing is deleted. config.yml is renamed, so the next run has nothing to stop.
set -u
name=registry
if command -v docker >/dev/null 2>&1 && docker container inspect "$name" >/dev/null 2>&1; then
    docker update --restart=no "$name" >/dev/null \
        || { echo "regdeploy: could not set restart policy no on container $name; it was not stopped" >&2; exit 1; }
    docker stop -t 30 "$name" >/dev/null || { echo "regdeploy: could not stop container $name" >&2; exit 1; }
    echo "regdeploy: stopped the registry container $name; it stays, with restart policy no"
fi
# registry_lb_mode=ipvs: it was drained by refusing the load balancers' checks; that refusal goes (the
# load balancers no longer list it, and a host put back must answer them).
say() { echo "regdeploy: $*" >&2; }
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
        drain) lb_reject add || { echo "regdeploy: could not reject the load balancers' checks of reg3" >&2; return 1; } ;;
        ready) lb_reject remove || { echo "regdeploy: could not end the REJECT of the load balancers' checks of reg3" >&2; return 1; } ;;
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
    { lb_rules remove COUNT && lb_rules add COUNT; } || { echo "regdeploy: could not count the load balancers' checks of reg3" >&2; return 1; }
    lb_await regdeploy-lb-check "opened no check"
    lb_rules remove COUNT || { echo "regdeploy: could not remove the rules counting the load balancers' checks of reg3" >&2; return 1; }
}

lb_set ready || exit 1
# Its token service (registry_access), if it ran one.
systemctl disable --now regdeploy-token.service >/dev/null 2>&1 || true
mv -f /etc/regdeploy/config.yml /etc/regdeploy/config.yml.regdeploy-retired || { echo "regdeploy: could not rename /etc/regdeploy/config.yml" >&2; exit 1; }
echo "regdeploy: /etc/regdeploy/config.yml is now /etc/regdeploy/config.yml.regdeploy-retired"

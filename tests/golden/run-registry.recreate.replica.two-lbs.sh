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

# Behind regdeploy's load balancers.
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
    --label regdeploy.spec-sha256=12ffc3a8cd0ec3b6dd4ba2ebc86d535efb171e8d7b72569ad70cd651cc258621 registry:2 /etc/docker/registry/config.yml >/dev/null \
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
lb_set ready || { echo "regdeploy: the new registry container runs, but not every load balancer takes it back: set" \
                       "reg1 to ready on their status pages" >&2; exit 1; }
# Done once every load balancer's health checks send this replica requests again (their status pages
# say UP), so the next replica is replaced only while this one serves.
if ! lb_wait_up; then
    echo "regdeploy: the new registry container runs, but the load balancers ($lb_pages) report" \
         "reg1 as $(lb_status | tr '\n' ' ')after 60 s, not UP: stopping here, so that no other replica is replaced" >&2
    exit 1
fi
say "every load balancer sends reg1 requests"


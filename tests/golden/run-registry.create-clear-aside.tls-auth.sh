# Rendered by regdeploy (templates/run-registry.sh.j2): create the registry container.
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



fail() { echo "regdeploy: $1" >&2; exit 1; }

# An interrupted earlier run left our previous container aside. It is set aside only after its data
# was verified in the data directory (or already lived there): removing it loses nothing.
docker rm -f "$name".regdeploy-old >/dev/null || exit 1

docker run -d --name "$name" --restart always -p 5000:5000 \
    -p 127.0.0.1::5001 \
    -v /var/lib/registry:/var/lib/registry -v /etc/regdeploy/config.yml:/etc/docker/registry/config.yml:ro \
    -v /etc/regdeploy/tls:/certs:ro \
    -v /etc/regdeploy/auth:/auth:ro \
    --label regdeploy.spec-sha256=81672e7759ef67510e66e7dfdadaa4eeb4899a0d5c0d8896ddad256325916ae6 registry:2 /etc/docker/registry/config.yml >/dev/null \
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


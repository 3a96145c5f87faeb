# Rendered by regdeploy (templates/run-registry.sh.j2): adopt the registry container.
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
    exit 1
}

# What a storage directory holds: every tag and the manifest digest it points at, read from its files.
stored() {
    [ -d "$1/docker/registry/v2/repositories" ] || return 0
    (cd "$1/docker/registry/v2/repositories" && find . -path '*/_manifests/tags/*/current/link' | while read -r link; do
        path=${link#./}; repo=${path%%/_manifests/*}; tag=${path#*/_manifests/tags/}; tag=${tag%/current/link}
        echo "$repo $tag $(cat "$link")"
    done | sort)
}
# verify_copy [DOCKER RUN ARGS]: a registry of the new image and config, on loopback only, on the copy
# (the args mount it; none: the bucket), must serve exactly $expected. Sets $served.
verify_copy() {
    verifier="$name".regdeploy-verify
    docker rm -f -v "$verifier" >/dev/null 2>&1
    docker run -d --name "$verifier" -p 127.0.0.1::5000 "$@" \
        -v /etc/regdeploy/config.yml:/etc/docker/registry/config.yml:ro -v /etc/regdeploy/tls:/certs:ro -v /etc/regdeploy/auth:/auth:ro registry:2 /etc/docker/registry/config.yml >/dev/null \
        || { docker rm -f -v "$verifier" >/dev/null 2>&1; fail "could not start a registry on the copy to verify it"; }
    # The API functions talk to the verifier's port for now (same name, CA and credentials).
    target=$(docker port "$verifier" 5000/tcp | head -n 1)
    if wait_ready 60; then served=$(manifests) || served="(the registry on the copy did not list its content)"
    else served="(the registry on the copy did not answer)"; fi
    docker rm -f -v "$verifier" >/dev/null 2>&1
    target=127.0.0.1:5000
}

# Nothing may write while the data is copied; the port must be free for the new container.
docker stop -t 30 "$name" >/dev/null || fail "could not stop container $name"

# Move the data: into an empty directory only, marked as unfinished until verified.
src=/var/lib/docker/volumes/v/_data
dest=/var/lib/registry
marker="$dest"/.regdeploy-migration-incomplete
mkdir -p "$dest" || fail "could not create $dest"
# Our own unfinished copy (the marker says so): clear it and copy again.
find "$dest" -mindepth 1 -maxdepth 1 ! -name .regdeploy-migration-incomplete -exec rm -rf {} + || fail "could not clear $dest"
# shellcheck disable=SC2010,SC2143 # names only tested, never parsed; lost+found is the filesystem's
if [ -n "$(ls -A "$dest" | grep -vx -e lost+found -e .regdeploy-migration-incomplete)" ]; then
    fail "$dest is no longer empty: regdeploy does not merge registries; nothing was moved"
fi
need=$(du -sb "$src" | cut -f1)
avail=$(df -B1 --output=avail "$dest" | tail -n 1)
[ "$need" -lt "$avail" ] || fail "moving $need bytes into $dest needs more than the $avail bytes free there"
: > "$marker" || fail "could not write $marker"
say "moving 2 repositories from $src to $dest"
cp -a "$src/." "$dest/" || fail "copying $src to $dest failed (the copy stays marked unfinished; $src is untouched)"
# Same files, types, sizes, modes and owners on both sides.
files() { (cd "$1" && find . -mindepth 1 ! -name .regdeploy-migration-incomplete \( \( -type f -printf '%P f %s %m %U %G\n' \) -o -printf '%P %y - %m %U %G\n' \) | sort); }
[ "$(files "$src")" = "$(files "$dest")" ] || fail "the copy in $dest differs from $src (files, sizes or modes)"
expected=$(stored "$src")
verify_copy -v "$dest":/var/lib/registry:ro
if [ "$served" != "$expected" ]; then
    printf '%s\n' "expected:" "$expected" "served by the copy:" "$served" >&2
    fail "the registry on the copy in $dest does not serve every tag with the same digest"
fi
rm -f "$marker"
say "verified in $dest: $(printf '%s\n' "$expected" | grep -c .) tags, same manifest digests; $src is left as it was"

docker rename "$name" "$aside" || fail "could not rename container $name to $aside"
moved_aside=1
docker update --restart=no "$aside" >/dev/null || fail "could not set restart policy no on $aside"

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
served=$(manifests) || fail "the new registry did not list its content"
[ "$served" = "$expected" ] || fail "the new registry does not serve every tag with the same digest"
say 'the container '"'"'registry'"'"' found there is kept as '"'"'registry.aside'"'"' (stopped, restart policy no); the previous data stays in volume v (/var/lib/docker/volumes/v/_data). regdeploy never deletes either; once you no longer need them: docker rm registry.aside && docker volume rm v'


# Rendered by regdeploy (templates/registry-catalog.sh.j2), run on the registry server: print
# "repository NAME" and "tag NAME TAG" lines for everything the registry holds, following the
# API's pagination. Prints "unreachable" if /v2/ does not answer.
# Included by regdeploy's scripts (templates/registry-api.sh.j2): shell functions over the registry
# API, with curl. `base` is the URL clients use (so a TLS certificate's name checks out), and curl
# connects to "$target" instead: the registry on this host's loopback (a caller may point it at
# another port). CA and credentials come from files (regdeploy.registry_files): no secret is ever
# on a command line. The user agent says regdeploy: its requests are not pulls (retention's
# `pulled=` reads the access log).
base=https://reg1:5000
target=127.0.0.1:5000
# registry_access: the registry takes a bearer token, not a password. Before each request, one from
# the token service on this host, for the repository the URL names (every action: the service grants
# what the rules give regdeploy's account) or the catalog, asked with the credentials file. The token
# reaches curl in a file only this user reads, removed after the request: never on a command line.
token_url=https://reg1:5002/token
api_curl() {
    api_scope=
    for api_argument in "$@"; do
        case "$api_argument" in
            "$base"/v2/_catalog*) api_scope='registry:catalog:*' ;;
            "$base"/v2/*/manifests/*|"$base"/v2/*/blobs/*|"$base"/v2/*/tags/list*)
                api_scope=${api_argument#"$base"/v2/}
                api_scope=${api_scope%/manifests/*}; api_scope=${api_scope%/blobs/*}; api_scope=${api_scope%/tags/list*}
                api_scope="repository:$api_scope:pull,push,delete" ;;
        esac
    done
    api_token=$(curl -fsS --connect-to reg1:5002:127.0.0.1:5002 \
            --cacert /etc/docker/certs.d/reg1:5000/ca.crt --config /etc/regdeploy/api-credentials --get --data-urlencode service=regdeploy-registry \
            --data-urlencode "scope=$api_scope" "$token_url" | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p') \
        && [ -n "$api_token" ] || return 1
    api_header=$(umask 077 && mktemp) || return 1
    printf 'Authorization: Bearer %s\n' "$api_token" > "$api_header"
    api_status=0
    curl -A regdeploy --connect-to reg1:5000:"$target" --cacert /etc/docker/certs.d/reg1:5000/ca.crt -H @"$api_header" "$@" || api_status=$?
    rm -f "$api_header"
    return "$api_status"
}

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

api_curl -fsS -o /dev/null "$base/v2/" 2>/dev/null || { echo unreachable; exit 0; }
repositories=$(walk /v2/_catalog) || exit 1
for name in $repositories; do
    echo "repository $name"
done
for name in $repositories; do
    tags=$(walk "/v2/$name/tags/list") || exit 1
    for tag in $tags; do echo "tag $name $tag"; done
done

# Rendered by regdeploy (templates/replica-maintenance.sh.j2), run on one registry replica by
# `regdeploy gc` and `prune` on shared S3 storage: step "list". The regdeploy command runs the
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

# The S3 key, as a curl config, on stdin: never on a command line.
bucket=http://rgw:7480/images
work=$(mktemp -d) || exit 1
cred=$(umask 077 && mktemp) || exit 1
trap 'rm -rf "$work" "$cred"' EXIT
cat > "$cred"

# Included by regdeploy's scripts that read or prune the registry's storage (templates/storage.sh.j2),
# here its S3 bucket ($bucket, its URL).
# Included by the scripts that reach the S3 store (templates/s3-curl.sh.j2). s3 CURL-ARGUMENTS: curl
# against it, signed with AWS signature v4 (region us-east-1) and the key in the curl config file
# $cred, which came on stdin: never on a command line. The payload is not signed (UNSIGNED-PAYLOAD).
s3() { curl -fsS -K "$cred" --aws-sigv4 aws:amz:us-east-1:s3 -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"; }
repositories=docker/registry/v2/repositories
# s3_keys PREFIX: "KEY LAST-MODIFIED SIZE" for every object under PREFIX, all pages. Query parameters
# sorted and encoded: curl signs the query as given, S3 checks its canonical form. Keys here are
# distribution's paths: no character XML or a URL would escape.
s3_keys() {
    s3_token=
    while :; do
        s3_page=$(s3 "$bucket/?${s3_token:+continuation-token=$s3_token&}list-type=2&prefix=$(printf %s "$1" | sed 's|/|%2F|g')") \
            || return 1
        s3_page=$(printf '%s' "$s3_page" | tr -d '\n')
        printf '%s\n' "$s3_page" | sed 's/<Contents>/\n/g' \
            | sed -n 's|.*<Key>\([^<]*\)</Key>.*<LastModified>\([^<]*\)</LastModified>.*<Size>\([0-9]*\)</Size>.*|\1 \2 \3|p'
        case "$s3_page" in *"<IsTruncated>true</IsTruncated>"*) ;; *) return 0 ;; esac
        s3_token=$(printf '%s' "$s3_page" | sed -n 's|.*<NextContinuationToken>\([^<]*\)</NextContinuationToken>.*|\1|p' \
            | sed 's/%/%25/g; s/+/%2B/g; s|/|%2F|g; s/=/%3D/g; s/:/%3A/g')
        [ -n "$s3_token" ] || return 1
    done
}
# tag_links: "REPOSITORY TAG DIGEST EPOCH" for every tag (EPOCH: its last push, when its current/link
# was written).
# Each listing fails if a page does (dash has no pipefail: a listing is kept, then filtered).
tag_links() {
    keys=$(s3_keys "$repositories/") || return 1
    printf '%s\n' "$keys" | sed -n "s|^$repositories/\(.*\)/_manifests/tags/\([^/]*\)/current/link \([^ ]*\) .*|\1 \2 \3|p" \
        | while read -r repository tag modified; do
            read_tag "$repository" "$tag" || exit 1
            echo "$repository $tag $current $(date -u -d "$modified" +%s)"
        done
}
# revisions: "REPOSITORY DIGEST" for every manifest stored in a repository.
revisions() {
    keys=$(s3_keys "$repositories/") || return 1
    printf '%s\n' "$keys" | sed -n "s|^$repositories/\(.*\)/_manifests/revisions/sha256/\([0-9a-f]*\)/link .*|\1 sha256:\2|p"
}
# list_tags REPOSITORY: its tags' names.
list_tags() {
    keys=$(s3_keys "$repositories/$1/_manifests/tags/") || return 1
    printf '%s\n' "$keys" | sed -n 's|.*/_manifests/tags/\([^/]*\)/current/link .*|\1|p'
}
# read_tag REPOSITORY TAG: the digest it points at now in $current (empty, and fails: no such tag, or
# the store did not answer).
read_tag() { current=$(s3 "$bucket/$repositories/$1/_manifests/tags/$2/current/link" 2>/dev/null) || { current=; return 1; }; }
# delete_tag REPOSITORY TAG: the tag and its history (distribution's own untag).
delete_tag() {
    keys=$(s3_keys "$repositories/$1/_manifests/tags/$2/") || return 1
    printf '%s\n' "$keys" | while read -r key _; do
        [ -z "$key" ] || s3 -o /dev/null -X DELETE "$bucket/$key" || exit 1
    done
}
# delete_revision REPOSITORY DIGEST: the manifest's link in the repository.
delete_revision() { s3 -o /dev/null -X DELETE "$bucket/$repositories/$1/_manifests/revisions/sha256/${2#sha256:}/link"; }
# read_blob DIGEST: a blob's content.
read_blob() { hex=${1#sha256:}; s3 "$bucket/docker/registry/v2/blobs/sha256/$(printf %.2s "$hex")/$hex/data"; }
# stored_bytes: what the registry's objects take.
stored_bytes() { keys=$(s3_keys docker/) || return 1; printf '%s\n' "$keys" | awk '{n += $3} END {print n + 0}'; }

# list_storage: what the storage holds, only read (the registry keeps running and writable), for
# regdeploy.retention.parse_storage:
#   tag REPOSITORY TAG DIGEST EPOCH   EPOCH: the last push of TAG
#   revision REPOSITORY DIGEST        a manifest stored in REPOSITORY
#   manifest DIGEST BYTES JSON        once per manifest: its size and its JSON on one line
list_storage() (
    tags=$(tag_links) && listed=$(revisions) || exit 1
    [ -z "$tags" ] || printf '%s\n' "$tags" | sed 's/^/tag /'
    [ -n "$listed" ] || exit 0
    printf '%s\n' "$listed" | sed 's/^/revision /'
    blob=$(mktemp) || exit 1
    trap 'rm -f "$blob"' EXIT
    printf '%s\n' "$listed" | cut -d' ' -f2 | sort -u | while read -r digest; do
        read_blob "$digest" > "$blob" 2>/dev/null || { echo "regdeploy: manifest $digest has no blob" >&2; continue; }
        printf 'manifest %s %s %s\n' "$digest" "$(wc -c < "$blob")" "$(tr -d '\n\r' < "$blob")"
    done
)

# count_indexes: how many stored manifests are image indexes (multi-arch). The collector's
# --delete-untagged would delete their platform manifests, which have no tag of their own
# (distribution issue 3178).
# A manifest that cannot be read counts as one: then untagged manifests are kept.
count_indexes() {
    listed=$(revisions) || return 1
    printf '%s\n' "$listed" | while read -r _ digest; do
        [ -n "$digest" ] || continue
        blob=$(read_blob "$digest" 2>/dev/null) || { echo "$digest"; continue; }
        printf '%s\n' "$blob" \
            | grep -qE '"mediaType": *"application/vnd\.(oci\.image\.index\.v1|docker\.distribution\.manifest\.list\.v2)\+json"' \
            && echo "$digest"
    done | wc -l
}

# tag_points_at REPOSITORY DIGEST: whether a tag of REPOSITORY points at DIGEST now; when the tags
# cannot be read, it says yes (the manifest is kept).
tag_points_at() {
    tag_names=$(list_tags "$1") || return 0
    for tag_name in $tag_names; do
        read_tag "$1" "$tag_name" || return 0
        [ "$current" != "$2" ] || return 0
    done
    return 1
}

list_storage || { say "could not list the bucket $bucket"; exit 1; }

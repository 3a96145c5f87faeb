# Rendered by regdeploy (templates/registry-gc.sh.j2), run on the registry server by `regdeploy gc`:
# the registry's garbage collector, which is only safe while nothing writes. The registry is switched
# to read-only (pulls keep working, pushes are refused), the collector runs against the same storage
# and config inside the container, config.yml is put back however the script ends, and every tag
# must then be served with the digest it had. Messages go to stderr; the last stdout line is a JSON
# report.
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


# Included by regdeploy's scripts that read or prune the registry's storage (templates/storage.sh.j2),
# here its filesystem storage ($data) on this host.
repositories="$data/docker/registry/v2/repositories"
# tag_links: "REPOSITORY TAG DIGEST EPOCH" for every tag (EPOCH: its last push, its current/link's mtime).
tag_links() (
    [ -d "$repositories" ] || exit 0
    cd "$repositories" || exit 1
    find . -path '*/_manifests/tags/*/current/link' -printf '%P %T@\n' | while read -r path pushed; do
        repository=${path%%/_manifests/*}
        tag=${path#*/_manifests/tags/}
        tag=${tag%/current/link}
        read_link "$path"
        echo "$repository $tag $current $pushed"
    done
)
# revisions: "REPOSITORY DIGEST" for every manifest stored in a repository.
revisions() (
    [ -d "$repositories" ] || exit 0
    cd "$repositories" || exit 1
    find . -path '*/_manifests/revisions/sha256/*/link' -printf '%P\n' | while read -r path; do
        hex=${path%/link}
        echo "${path%%/_manifests/*} sha256:${hex##*/}"
    done
)
read_link() { current=; { IFS= read -r current || [ -n "$current" ]; } < "$1"; } 2>/dev/null
# list_tags REPOSITORY: its tags' names.
list_tags() {
    for link in "$repositories/$1"/_manifests/tags/*/current/link; do
        [ -e "$link" ] || continue
        link=${link%/current/link}
        echo "${link##*/}"
    done
}
# read_tag REPOSITORY TAG: the digest it points at now in $current (empty, and fails: no such tag).
read_tag() { read_link "$repositories/$1/_manifests/tags/$2/current/link"; }
# delete_tag REPOSITORY TAG: the tag and its history (distribution's own untag).
delete_tag() { rm -rf "$repositories/$1/_manifests/tags/$2"; }
# delete_revision REPOSITORY DIGEST: the manifest's link in the repository.
delete_revision() { rm -rf "$repositories/$1/_manifests/revisions/sha256/${2#sha256:}"; }
# read_blob DIGEST: a blob's content.
read_blob() { hex=${1#sha256:}; cat "$data/docker/registry/v2/blobs/sha256/$(printf %.2s "$hex")/$hex/data"; }
# stored_bytes: what the storage takes on disk.
stored_bytes() { du -sb "$data" | cut -f1; }

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



# Included by the scripts that collect garbage (templates/collect.sh.j2): `regdeploy gc` and `prune`,
# on one server or on replicas. Needs storage.sh.j2's and registry-api.sh.j2's functions, say(),
# $name and $work.
# choose_flags: the collector's flags in $flags, and how many image indexes are stored in $indexes.
# --delete-untagged also deletes the platform manifests an image index (multi-arch) refers to, since
# they carry no tag of their own (distribution issue 3178): with any index stored, untagged manifests
# are kept and only unreferenced blobs go.
choose_flags() {
    indexes=$(count_indexes) || { say "could not read the registry's manifests"; return 1; }
    if [ "$indexes" -gt 0 ]; then
        flags=""
        say "$indexes image index(es) stored: untagged manifests are kept (distribution issue 3178), only unreferenced blobs are freed"
    else
        flags="--delete-untagged"
    fi
}
# collect: once nothing can be pushed: the flags chosen now (an index pushed until then counts), the
# storage's size in $before_bytes, every tag
# and its digest in $work/before, then the collector, its output in $work/gc.log and its exit status in
# $gc_status. Fails before the collector runs if something cannot be read.
collect() {
    choose_flags || return 1
    before_bytes=$(stored_bytes) || { say "could not measure the storage"; return 1; }
    # What must still be served afterwards, listed once nothing can be pushed.
    manifests > "$work/before" || { say "could not list the registry's content"; return 1; }
    # shellcheck disable=SC2086
    docker exec "$name" registry garbage-collect $flags /etc/docker/registry/config.yml > "$work/gc.log" 2>&1
    gc_status=$?
}


start=$(now)
if ! enter_readonly; then
    put_back; rm -rf "$work"; say "the registry did not come back in read-only mode: nothing was collected"; exit 1
fi
readonly_at=$(now)
if ! collect; then
    put_back; rm -rf "$work"; say "the collector did not run; the registry is writable again"; exit 1
fi
collected_at=$(now)
put_back || { rm -rf "$work"; say "could not put $config back: run the deploy to restore it"; exit 1; }
end=$(now)
trap - INT TERM HUP
if [ "$gc_status" != 0 ]; then
    tail -n 20 "$work/gc.log" >&2; rm -rf "$work"; say "garbage-collect failed (exit $gc_status); the registry is writable again"; exit 1
fi
manifests > "$work/after" || { rm -rf "$work"; say "could not list the registry's content after collecting"; exit 1; }
# Pushes may have landed since the registry is writable again: every tag from before must be there.
if [ -n "$(comm -23 "$work/before" "$work/after")" ]; then
    comm -23 "$work/before" "$work/after" >&2; rm -rf "$work"
    say "after garbage-collect the registry does not serve every tag with the digest it had"; exit 1
fi
after_bytes=$(stored_bytes)
summary=$(grep -E 'blobs marked' "$work/gc.log" | tail -n 1)
tags=$(grep -c . "$work/before")
freed=$((before_bytes - after_bytes))
rm -rf "$work"
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
say "read-only window: $(seconds "$start" "$end") s (collector $(seconds "$readonly_at" "$collected_at") s); freed $freed bytes; $tags tags still served with the same digests. $summary"
printf '{"freed_bytes": %s, "before_bytes": %s, "after_bytes": %s, "readonly_seconds": %s, "collector_seconds": %s, "readonly_from": %s, "readonly_until": %s, "delete_untagged": %s, "indexes": %s, "tags": %s}\n' \
    "$freed" "$before_bytes" "$after_bytes" "$(seconds "$start" "$end")" \
    "$(seconds "$readonly_at" "$collected_at")" "$readonly_at" "$collected_at" \
    "$([ -n "$flags" ] && echo true || echo false)" "$indexes" "$tags"

# Rendered by regdeploy (templates/actions/registry-storage.sh.j2), run on the registry server by
# `regdeploy prune`: what its filesystem storage holds (list_storage), only read.
set -u
data=/var/lib/registry
# list_storage: what the registry's filesystem storage ($data) holds, only read (the registry keeps
# running and writable), for regdeploy.retention.parse_storage:
#   tag REPOSITORY TAG DIGEST EPOCH   EPOCH: the last push of TAG, its current/link's mtime
#   revision REPOSITORY DIGEST        a manifest stored in REPOSITORY
#   manifest DIGEST BYTES JSON        once per manifest: its size and its JSON on one line
list_storage() (
    [ -d "$data/docker/registry/v2/repositories" ] || exit 0
    cd "$data/docker/registry/v2/repositories" || exit 1
    list=$(mktemp) || exit 1
    trap 'rm -f "$list"' EXIT
    find . -path '*/_manifests/tags/*/current/link' -printf '%P %T@\n' | while read -r path pushed; do
        repository=${path%%/_manifests/*}
        tag=${path#*/_manifests/tags/}
        tag=${tag%/current/link}
        digest=
        { IFS= read -r digest || [ -n "$digest" ]; } < "$path"
        echo "tag $repository $tag $digest $pushed"
    done
    find . -path '*/_manifests/revisions/sha256/*/link' -printf '%P\n' | while read -r path; do
        hex=${path%/link}
        echo "revision ${path%%/_manifests/*} sha256:${hex##*/}"
    done > "$list"
    cat "$list"
    cut -d' ' -f3 "$list" | sort -u | while read -r digest; do
        hex=${digest#sha256:}
        blob="$data/docker/registry/v2/blobs/sha256/$(printf %.2s "$hex")/$hex/data"
        size=$(stat -c %s "$blob" 2>/dev/null) || { echo "regdeploy: manifest $digest has no blob" >&2; continue; }
        printf 'manifest %s %s %s\n' "$digest" "$size" "$(tr -d '\n\r' < "$blob")"
    done
)

list_storage

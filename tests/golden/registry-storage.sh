# Rendered by regdeploy (templates/actions/registry-storage.sh.j2), run on the registry server by
# `regdeploy prune`: what its filesystem storage holds (list_storage), only read.
set -u
data=/var/lib/registry

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

list_storage || exit 1

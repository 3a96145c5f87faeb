# Rendered by regdeploy (templates/docker-ce-repository.sh.j2): add Docker's apt repository (or a
# mirror of it) as Docker documents it — the key from <repo>/gpg dearmored into /etc/apt/keyrings,
# a deb822 source with signed-by — but only after apt has fetched and verified that repository on
# its own: a repository apt refuses (another key, unreachable, no such suite) leaves nothing behind.
set -u
base=https://download.docker.com/linux/debian
keyring=/etc/apt/keyrings/docker.gpg
source_file=/etc/apt/sources.list.d/docker.sources
fail() { echo "regdeploy: $1" >&2; rm -rf "$work"; exit 1; }
work=$(mktemp -d) || exit 1

if ! command -v curl >/dev/null || ! command -v gpg >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q ca-certificates curl gnupg >/dev/null \
        || fail "could not install curl and gnupg, which fetching Docker's apt key needs"
fi
curl -fsSL --max-time 60 "$base/gpg" -o "$work/key.asc" 2>"$work/curl.err" \
    || fail "cannot fetch Docker's apt key from $base/gpg: $(cat "$work/curl.err")"
{ gpg --dearmor < "$work/key.asc" > "$work/key.gpg" 2>/dev/null && [ -s "$work/key.gpg" ]; } \
    || fail "$base/gpg is not a PGP public key"
fingerprint=$(gpg --show-keys --with-colons "$work/key.gpg" 2>/dev/null | awk -F: '$1 == "fpr" { print $10; exit }')
cat > "$work/docker.sources" <<EOF_SOURCES
Types: deb
URIs: $base
Suites: bookworm
Components: stable
Signed-By: $keyring
EOF_SOURCES

# apt on this repository alone, with the new key, in a scratch state directory: nothing of the
# host's apt configuration changes until it passes.
sed "s|^Signed-By: .*|Signed-By: $work/key.gpg|" "$work/docker.sources" > "$work/check.sources"
mkdir -p "$work/lists/partial" "$work/parts"
cp "$work/check.sources" "$work/parts/"
# apt exits 0 on some failures (a mirror that does not answer): any E: or W: line fails too.
apt-get update -q -o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts="$work/parts" \
    -o Dir::State::Lists="$work/lists" -o APT::Sandbox::User=root >"$work/apt.log" 2>&1
status=$?
if [ "$status" != 0 ] || grep -qE '^(E|W):' "$work/apt.log"; then
    grep -E '^(E|W):' "$work/apt.log" | head -n 3 >&2
    fail "apt refuses $base (bookworm stable) with the key published at $base/gpg (fingerprint ${fingerprint:-unknown}); nothing was installed or left in /etc/apt"
fi

{ install -d -m 755 "$(dirname "$keyring")" && install -m 644 "$work/key.gpg" "$keyring" \
    && install -m 644 "$work/docker.sources" "$source_file"; } || fail "could not write $keyring and $source_file"
rm -rf "$work"
echo "regdeploy: added $base (bookworm stable), signed by $fingerprint"

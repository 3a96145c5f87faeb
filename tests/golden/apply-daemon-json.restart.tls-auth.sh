# Rendered by regdeploy (templates/apply-daemon-json.sh.j2): stage the merged daemon.json, swap it
# in atomically, restart Docker, confirm dockerd took it; on failure put the old file
# back. One script, one round trip: staging through an upload would cost three more.
set -u
current=/etc/docker/daemon.json
staged=/etc/docker/daemon.json.regdeploy-new
backup=/etc/docker/daemon.json.regdeploy-bak

mkdir -p "$(dirname "$current")" || exit 1
cat > "$staged" <<'REGDEPLOY_DAEMON_JSON' || exit 1
{
  "debug": true
}
REGDEPLOY_DAEMON_JSON
# The file keeps its mode (an operator may have chosen 600); a new one is 644.
if [ -e "$current" ]; then chmod --reference="$current" "$staged"; else chmod 644 "$staged"; fi || exit 1

fail() {
    echo "regdeploy: $1" >&2
    if [ "$had_current" = 1 ]; then mv -f "$backup" "$current"; else rm -f "$current"; fi
    systemctl restart docker >/dev/null 2>&1
    echo "regdeploy: restored the previous $current and restarted Docker" >&2
    journalctl -u docker -n 15 --no-pager >&2 2>/dev/null
    exit 1
}
dockerd --validate --config-file "$staged" >/dev/null || { echo "regdeploy: dockerd rejects $staged" >&2; exit 1; }
had_current=0
if [ -e "$current" ]; then cp -p "$current" "$backup" && had_current=1 || exit 1; fi
# On disk before it takes the name: a power cut right after this run leaves the old file or the
# new one, never an empty one (the rename may reach the disk before the data otherwise).
sync "$staged" || exit 1
mv -f "$staged" "$current" || exit 1

if ! systemctl is-active --quiet docker; then
    systemctl start docker || fail "Docker did not start with the new $current"
else
    systemctl restart docker || fail "Docker did not restart with the new $current"
fi
# A reload is asynchronous: wait until `docker info` no longer lists the registry (it serves TLS) as
# insecure. `docker info` must answer at all: a daemon that does not is no proof.
i=0
# shellcheck disable=SC2086 # $listed: one registry per word, split on purpose
until listed=$(docker info --format '{{range $name, $index := .RegistryConfig.IndexConfigs}}{{if not $index.Secure}}{{$name}} {{end}}{{end}}' 2>/dev/null) \
        && ! printf '%s\n' $listed | grep -qxF reg1:5000; do
    i=$((i + 1))
    [ "$i" -lt 150 ] || fail "Docker still lists reg1:5000 as an insecure registry 30 s after the restart"
    sleep 0.2
done
# What dockerd has now taken: the DockerHostState fact skips `docker info` while the file stays this,
# which the stamp's mtime (the file's) lets it see without hashing the file on every run.
sha256sum < "$current" > "$current".regdeploy-confirmed && touch -r "$current" "$current".regdeploy-confirmed

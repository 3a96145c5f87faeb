# Rendered by regdeploy (templates/apply-containerd-config.sh.j2): containerd's config.toml with
# config_path set (every other setting as it was), checked by containerd itself before it goes live,
# swapped in atomically, containerd restarted and waited for; on failure the old file comes back.
set -u
current=/etc/containerd/config.toml
staged=/etc/containerd/config.toml.regdeploy-new
backup=/etc/containerd/config.toml.regdeploy-bak

mkdir -p "$(dirname "$current")" || exit 1
cat > "$staged" <<'REGDEPLOY_CONTAINERD_CONFIG' || exit 1
version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
REGDEPLOY_CONTAINERD_CONFIG
if [ -e "$current" ]; then chmod --reference="$current" "$staged"; else chmod 644 "$staged"; fi || exit 1
containerd --config "$staged" config dump >/dev/null \
    || { echo "regdeploy: containerd rejects $staged" >&2; rm -f "$staged"; exit 1; }

fail() {
    echo "regdeploy: $1" >&2
    if [ "$had_current" = 1 ]; then mv -f "$backup" "$current"; else rm -f "$current"; fi
    systemctl restart containerd >/dev/null 2>&1
    echo "regdeploy: restored the previous $current and restarted containerd" >&2
    exit 1
}
had_current=0
if [ -e "$current" ]; then cp -p "$current" "$backup" && had_current=1 || exit 1; fi
mv -f "$staged" "$current" || exit 1
# A stopped containerd reads the file when it starts; only a running one is restarted.
if systemctl is-active --quiet containerd; then
    systemctl restart containerd || fail "containerd did not restart with the new $current"
    i=0
    until ctr version >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -lt 150 ] || fail "containerd does not answer 30 s after the restart"
        sleep 0.2
    done
fi

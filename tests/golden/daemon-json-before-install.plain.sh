# Rendered by regdeploy (templates/daemon-json-before-install.sh.j2): the new /etc/docker/daemon.json, written before
# Docker's packages are installed, as the manual does it, so the package's first start of dockerd reads
# it and no reload follows. Only on a host where the fact found no file and no dockerd
# (daemon_config.write_before_install); daemon-json-after-install.sh.j2 confirms it once Docker runs.
set -u
current=/etc/docker/daemon.json
staged=/etc/docker/daemon.json.regdeploy-new
mkdir -p "$(dirname "$current")" || exit 1
cat > "$staged" <<'REGDEPLOY_DAEMON_JSON' || exit 1
{
  "insecure-registries": [
    "reg1:5000"
  ]
}
REGDEPLOY_DAEMON_JSON
chmod 644 "$staged" || exit 1
# On disk before it takes the name: a power cut right after this run leaves no empty daemon.json.
sync "$staged" || exit 1
# A link, not a rename: it never replaces a file that appeared since the fact looked.
if ! ln "$staged" "$current" 2>/dev/null; then
    rm -f "$staged"
    echo "regdeploy: $current appeared during the deploy; it is left as it is: run the deploy again" >&2
    exit 1
fi
rm -f "$staged"

# Rendered by regdeploy (templates/actions/registry-login.sh.j2): log root's Docker (and local users'),
# Podman and/or containerd in to the registry. The password is this script's stdin (one line), read into a variable and
# handed to each `login --password-stdin` by printf, a shell builtin: never a command line.
set -eu
password=
IFS= read -r password || [ -n "$password" ]
# containerd's: the same password as a TOML string (quoted by the controller), stdin's second line.
toml_password=
IFS= read -r toml_password || [ -n "$toml_password" ]
# containerd: CRI's credentials in config.toml, which containerd reads only when it starts.
(
set +e
# Rendered by regdeploy (templates/apply-containerd-config.sh.j2): containerd's config.toml with
# config_path set and CRI's credentials for the registry (every other setting as it was),
# checked by containerd itself before it goes live, swapped in atomically, containerd restarted and
# waited for; on failure the old file comes back. The planned file holds no secret: each line the
# fact masked (`KEY= "<regdeploy: masked line N>"`) is put back from line N of the file as it is, and
# the password's place gets $toml_password (the password as a TOML string, from the login script's stdin).
set -u
current=/etc/containerd/config.toml
masked=/etc/containerd/config.toml.regdeploy-masked
staged=/etc/containerd/config.toml.regdeploy-new
backup=/etc/containerd/config.toml.regdeploy-bak

mkdir -p "$(dirname "$current")" || exit 1
cat > "$masked" <<'REGDEPLOY_CONTAINERD_CONFIG' || exit 1
version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
config_path = "/etc/containerd/certs.d"

[plugins."io.containerd.grpc.v1.cri".registry.configs."registry:5000".auth]
username = "ci"
password = "<regdeploy: the password, on stdin>"
REGDEPLOY_CONTAINERD_CONFIG
# Exit 3: a masked line's number no longer holds the same key (the file changed since the fact read it).
# printf is a shell builtin: the password is on no command line.
printf '%s\n' "$toml_password" | (umask 077 && awk -v placeholder='"<regdeploy: the password, on stdin>"' '
    BEGIN { getline value < "/dev/stdin" }
    FILENAME == ARGV[1] { kept[FNR] = $0; next }
    match($0, /= "<regdeploy: masked line [0-9]+>"[ \t]*$/) {
        key = substr($0, 1, RSTART - 1)
        n = substr($0, RSTART + length("= \"<regdeploy: masked line ")) + 0
        if (!(n in kept) || substr(kept[n], 1, length(key) + 1) != key "=") exit 3
        print kept[n]
        next
    }
    (i = index($0, placeholder)) > 0 { print substr($0, 1, i - 1) value substr($0, i + length(placeholder)); next }
    { print }' "$([ -e "$current" ] && echo "$current" || echo /dev/null)" "$masked" > "$staged")
status=$?
rm -f "$masked"
if [ "$status" -ne 0 ]; then
    rm -f "$staged"
    echo "regdeploy: $current changed since this deploy read it; nothing was changed: deploy again" >&2
    exit 1
fi
chmod 600 "$staged" || exit 1  # it holds a password
# containerd's own reading of it; its output (which shows every secret) goes nowhere.
containerd --config "$staged" config dump >/dev/null 2>&1 \
    || { echo "regdeploy: containerd rejects the config.toml regdeploy made for $current; nothing was changed" >&2
         rm -f "$staged"; exit 1; }

fail() {
    echo "regdeploy: $1" >&2
    if [ "$had_current" = 1 ]; then mv -f "$backup" "$current"; else rm -f "$current"; fi
    systemctl restart containerd >/dev/null 2>&1
    echo "regdeploy: restored the previous $current and restarted containerd" >&2
    exit 1
}
had_current=0
if [ -e "$current" ]; then cp -p "$current" "$backup" && had_current=1 || exit 1; fi
# On disk before it takes the name: a power cut right after this run leaves the old file or the
# new one, never an empty one (the rename may reach the disk before the data otherwise).
sync "$staged" || exit 1
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
# What the next run verifies the password against (the user and a bcrypt hash, no secret).
# shellcheck disable=SC2016 # a bcrypt hash: its $ are literal
printf '%s\n' 'ci $2b$10$hash' > /etc/containerd/regdeploy-login

)

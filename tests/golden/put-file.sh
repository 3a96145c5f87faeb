# Rendered by regdeploy (templates/put-file.sh.j2): write /etc/regdeploy/my file atomically, owned by
# root:root with mode 600 from its creation (never readable by others,
# not even for a moment).
set -eu
path='/etc/regdeploy/my file'
mkdir -p "$(dirname "$path")"
chmod 700 "$(dirname "$path")"
umask 077
staged="$path.regdeploy-new"
rm -f "$staged"
cat > "$staged" <<'REGDEPLOY_FILE'
CA $x `y`
REGDEPLOY_FILE
chown root:root "$staged"
chmod 600 "$staged"
# On disk before it takes the name: a power cut right after this run leaves the old file or the
# new one, never an empty one (the rename may reach the disk before the data otherwise).
sync "$staged"
mv -f "$staged" "$path"

# Rendered by regdeploy (templates/actions/registry-login.sh.j2): log root's Docker (and local users'),
# Podman and/or containerd in to the registry. The password is this script's stdin (one line), read into a variable and
# handed to each `login --password-stdin` by printf, a shell builtin: never a command line.
set -eu
password=
IFS= read -r password || [ -n "$password" ]
# Docker: root's config.json, where `docker login` keeps it.
printf '%s\n' "$password" | DOCKER_CONFIG=/root/.docker \
    docker login --username ci --password-stdin registry:5000 >/dev/null
# What the next run verifies the password against (the user and a bcrypt hash, no secret).
# shellcheck disable=SC2016 # a bcrypt hash: its $ are literal
printf '%s\n' 'ci $2b$10$hash' > /root/.docker/regdeploy-login
# Podman: an auth file that survives a reboot (not ${XDG_RUNTIME_DIR}, a tmpfs).
(umask 077 && mkdir -p /root/.config/containers)
printf '%s\n' "$password" | podman login --authfile /root/.config/containers/auth.json --username ci \
    --password-stdin registry:5000 >/dev/null 2>&1
chmod 600 /root/.config/containers/auth.json
# shellcheck disable=SC2016 # a bcrypt hash: its $ are literal
printf '%s\n' 'ci $2b$10$hash' > /root/.config/containers/regdeploy-login

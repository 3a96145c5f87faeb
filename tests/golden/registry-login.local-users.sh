# Rendered by regdeploy (templates/actions/registry-login.sh.j2): log root's Docker (and local users'),
# Podman and/or containerd in to the registry. The password is this script's stdin (one line), read into a variable and
# handed to each `login --password-stdin` by printf, a shell builtin: never a command line.
set -eu
password=
IFS= read -r password || [ -n "$password" ]
# Local users' Docker (registry_login_local_users): run as each user, into their own home.
# local_home USER: their home from the passwd database, in $home (empty: no such user).
local_home() {
    home=
    IFS=: read -r _ _ _ _ _ home _ <<PASSWD
$(getent passwd "$1")
PASSWD
}
# log_out_local_user USER REGISTRY: their Docker logged out (as them), regdeploy's stamp removed.
log_out_local_user() {
    local_home "$1"
    [ -n "$home" ] || return 0
    runuser -u "$1" -- env DOCKER_CONFIG="$home/.docker" docker logout "$2" >/dev/null 2>&1
    rm -f "$home/.docker/regdeploy-login"
}

# log_in_local_user USER: their Docker as them, into their own ~/.docker (they must be in the docker
# group: docker login asks the daemon), and the stamp beside it, written as them too.
log_in_local_user() {
    local_home "$1"
    [ -n "$home" ] || { echo "regdeploy: registry_login_local_users: there is no local user $1 on this host: create it, or take it out of the list" >&2; return 1; }
    case " $(id -nG "$1") " in
        *" docker "*) ;;
        *) echo "regdeploy: registry_login_local_users: $1 is not in the docker group on this host: add it (usermod -aG docker $1), or take it out of the list" >&2
           return 1 ;;
    esac
    printf '%s\n' "$password" | runuser -u "$1" -- env DOCKER_CONFIG="$home/.docker" \
        docker login --username ci --password-stdin registry:5000 >/dev/null
    # shellcheck disable=SC2016 # a bcrypt hash: its $ are literal; $1 is the inner shell's
    printf '%s\n' 'ci $2b$10$hash' | runuser -u "$1" -- sh -c 'cat > "$1"' sh "$home/.docker/regdeploy-login"
}
log_in_local_user builder
log_in_local_user ci-runner

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
{ log_out_local_user builder registry:5000; }
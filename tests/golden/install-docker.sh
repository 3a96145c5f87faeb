# Rendered by regdeploy (templates/install-docker.sh.j2): apt-get update and install what the fact found
# missing, then Docker started and enabled, as one command: each command is a round trip on the fleet's
# slowest path, and pyinfra's apt.packages would ask dpkg again after the update.
apt-get update || exit 1
DEBIAN_FRONTEND=noninteractive apt-get -y install docker.io curl || exit 1
{ systemctl is-active -q docker && systemctl is-enabled -q docker; } || systemctl enable --now docker

# Rendered by regdeploy (templates/docker-login.sh.j2): log root's Docker in to the registry. The
# password is this script's stdin, handed to `docker login --password-stdin`: never a command line.
set -eu
export DOCKER_CONFIG=/root/.docker
docker login --username ci --password-stdin registry:5000 >/dev/null
# What the next run verifies the password against (the user and a bcrypt hash, no secret).
# shellcheck disable=SC2016 # a bcrypt hash: its $ are literal
printf '%s\n' 'ci $2b$10$hash' > /root/.docker/regdeploy-login

# Rendered by regdeploy (templates/push-images.sh.j2): the manual's copy steps on the server —
# get the image (pull only if absent), tag it into the registry, push, remove the local tag.
set -e
docker load -q -i /var/cache/regdeploy/seed.tar >/dev/null

docker image inspect app:1 >/dev/null 2>&1 || docker pull -q app:1
docker tag app:1 registry:5000/team/app:1
docker push -q registry:5000/team/app:1
docker image rm registry:5000/team/app:1 >/dev/null


# Rendered by regdeploy (templates/push-images.sh.j2): the manual's copy steps on the server —
# get the image (pull only if absent), tag it into the registry, push, remove the local tag.
set -e

docker image inspect registry:2 >/dev/null 2>&1 || docker pull -q registry:2
docker tag registry:2 registry:5000/library/registry:2
docker push -q registry:5000/library/registry:2
docker image rm registry:5000/library/registry:2 >/dev/null


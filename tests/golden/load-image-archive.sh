# Rendered by regdeploy (templates/load-image-archive.sh.j2): air-gapped image load, never a pull.
set -e
docker load -q -i '/var/cache/regdeploy/registry 2.tar'
docker image inspect registry:2 >/dev/null 2>&1 || {
    echo "regdeploy: /var/cache/regdeploy/registry 2.tar does not contain registry:2; set registry_image to the image it holds" >&2
    exit 1
}

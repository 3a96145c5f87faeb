# Rendered by regdeploy (templates/load-image-archive.sh.j2): air-gapped image load, never a pull.
set -e
echo '0000000000000000000000000000000000000000000000000000000000000000  /var/cache/regdeploy/registry 2.tar' | sha256sum -c --quiet - \
    || { echo "regdeploy: /var/cache/regdeploy/registry 2.tar on the server does not match SHA-256 0000000000000000000000000000000000000000000000000000000000000000" >&2; exit 1; }
docker load -q -i '/var/cache/regdeploy/registry 2.tar'
docker image inspect registry:2 >/dev/null 2>&1 || {
    echo "regdeploy: /var/cache/regdeploy/registry 2.tar does not contain registry:2; set registry_image to the image it holds" >&2
    exit 1
}

# Rendered by regdeploy (templates/retire-registry.sh.j2): this host is no longer a registry replica.
# The load balancers no longer send it requests (their configuration, written first, lists the
# replicas). Its registry container stops, finishing what it serves, and stays with restart policy no;
# nothing is deleted. config.yml is renamed, so the next run has nothing to stop.
set -u
name=registry
if command -v docker >/dev/null 2>&1 && docker container inspect "$name" >/dev/null 2>&1; then
    docker update --restart=no "$name" >/dev/null \
        || { echo "regdeploy: could not set restart policy no on container $name; it was not stopped" >&2; exit 1; }
    docker stop -t 30 "$name" >/dev/null || { echo "regdeploy: could not stop container $name" >&2; exit 1; }
    echo "regdeploy: stopped the registry container $name; it stays, with restart policy no"
fi
# Its token service (registry_access), if it ran one.
systemctl disable --now regdeploy-token.service >/dev/null 2>&1 || true
mv -f /etc/regdeploy/config.yml /etc/regdeploy/config.yml.regdeploy-retired || { echo "regdeploy: could not rename /etc/regdeploy/config.yml" >&2; exit 1; }
echo "regdeploy: /etc/regdeploy/config.yml is now /etc/regdeploy/config.yml.regdeploy-retired"

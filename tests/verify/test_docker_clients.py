"""Every host (clients and the server itself) trusts the registry, in daemon.json and in dockerd."""

import json
import shlex

from regdeploy.daemon_config import INSECURE_REGISTRIES_FORMAT


def test_daemon_json_lists_the_registry(access, fleet):
    for h in fleet.hosts:
        host = access.host(h)
        path = h.settings.docker_daemon_json
        config = json.loads(host.file(path).content_string)
        assert fleet.registry_address in config.get("insecure-registries", []), (h.name, config)


def test_dockerd_trusts_the_registry(access, fleet):
    for h in fleet.hosts:
        host = access.host(h)
        insecure = host.check_output(f"docker info --format {shlex.quote(INSECURE_REGISTRIES_FORMAT)}").split()
        assert fleet.registry_address in insecure, (h.name, insecure)
        assert host.service("docker").is_running, h.name

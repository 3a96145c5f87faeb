"""Every host (clients and the server itself) trusts the registry, in daemon.json and in dockerd."""

import json
import shlex

from regdeploy.daemon_config import INSECURE_REGISTRIES_FORMAT


def test_docker_runs_and_starts_at_boot(any_host):
    docker = any_host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_daemon_json_lists_the_registry(any_host, inventory_host, fleet):
    config = json.loads(any_host.file(inventory_host.settings.docker_daemon_json).content_string)
    assert fleet.registry_address in config.get("insecure-registries", []), config


def test_dockerd_trusts_the_registry(any_host, fleet):
    insecure = any_host.check_output(f"docker info --format {shlex.quote(INSECURE_REGISTRIES_FORMAT)}").split()
    assert fleet.registry_address in insecure, insecure

"""containerd (on hosts without Docker) and Podman trust the registry through their own files
only: containerd's hosts.toml (and config_path for CRI), Podman's registries.conf.d drop-in, and in
TLS mode the CA beside each. Hosts without the runtime carry none of these files."""

import json
import re
import tomllib

from regdeploy import runtime_config


def test_containerd_reaches_the_registry_through_hosts_toml(any_host, host_runtimes, fleet):
    settings = fleet.server.settings
    directory = runtime_config.containerd_hosts_dir(fleet.registry_address)
    hosts = any_host.file(f"{directory}/hosts.toml")
    if "containerd" not in host_runtimes:
        assert not hosts.exists, "regdeploy wrote containerd's hosts.toml on a host where containerd is not a runtime"
        return
    assert any_host.service("containerd").is_running
    scheme = "https" if settings.registry_tls else "http"
    assert tomllib.loads(hosts.content_string)["server"] == f"{scheme}://{fleet.registry_address}"
    assert any_host.file(f"{directory}/ca.crt").exists == settings.registry_tls
    config = tomllib.loads(any_host.file(runtime_config.CONTAINERD_CONFIG).content_string)
    table = runtime_config.REGISTRY_TABLE[config["version"]]
    assert config[table[0]][table[1]][table[2]]["config_path"] == runtime_config.CONTAINERD_CERTS_DIR
    # What containerd itself made of the file (2.x migrates a version 2 layout to its own).
    dumped = any_host.check_output("containerd config dump")
    assert re.search(rf"""^\s*config_path = ["']{runtime_config.CONTAINERD_CERTS_DIR}["']$""", dumped, re.M), dumped


def test_podman_lists_the_registry_in_its_own_dropin(any_host, host_runtimes, fleet):
    settings = fleet.server.settings
    dropin = any_host.file(runtime_config.PODMAN_DROPIN)
    if "podman" not in host_runtimes:
        # Not declared: a host without Podman carries no drop-in (one with Podman may: a Docker host
        # with Podman beside it, client_runtimes left to detection, trusts the registry in both).
        if not any_host.exists("podman"):
            assert not dropin.exists, "regdeploy wrote a Podman drop-in on a host without Podman"
        return
    entry = tomllib.loads(dropin.content_string)["registry"]
    assert entry == [{"location": fleet.registry_address, "insecure": not settings.registry_tls}]
    assert any_host.file(runtime_config.podman_ca_path(fleet.registry_address)).exists == settings.registry_tls
    # What Podman itself made of it (the distribution's registries.conf is left as it was).
    registries = json.loads(any_host.check_output("podman info --format json 2>/dev/null"))["registries"]
    assert registries[fleet.registry_address]["Insecure"] == (not settings.registry_tls), registries

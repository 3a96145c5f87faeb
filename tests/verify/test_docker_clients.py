"""Every Docker host (clients and the server itself) trusts the registry as its mode says: plain HTTP
in daemon.json's insecure-registries and in dockerd; TLS through the CA in Docker's certs.d and in
neither list; with authentication, root's Docker is logged in. On a host that pulls without Docker,
regdeploy installed no Docker."""

import json
import shlex
from pathlib import Path

import pytest

from regdeploy import registry_files, security
from regdeploy.daemon_config import INSECURE_REGISTRIES_FORMAT


def test_docker_runs_and_starts_at_boot_where_it_is_a_runtime(any_host, host_runtimes):
    if "docker" not in host_runtimes:
        assert not any_host.exists("dockerd"), "regdeploy installed Docker on a host that pulls without it"
        return
    docker = any_host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


@pytest.fixture
def docker_host(any_host, host_runtimes):
    """testinfra's host where Docker is a runtime; None where it is not (each test then checks that
    regdeploy left Docker's configuration alone there)."""
    return any_host if "docker" in host_runtimes else None


def test_daemon_json_lists_the_registry_unless_it_serves_tls(docker_host, any_host, inventory_host, fleet):
    if docker_host is None:
        assert not any_host.file(inventory_host.settings.docker_daemon_json).exists
        return
    daemon_json = any_host.file(inventory_host.settings.docker_daemon_json)
    # A fleet deployed straight into TLS mode needs no daemon.json (nothing to list): none is made.
    config = json.loads(daemon_json.content_string or "{}") if daemon_json.exists else {}
    listed = fleet.registry_address in (config.get("insecure-registries") or [])
    assert listed != fleet.server.settings.registry_tls, config


def test_dockerd_treats_the_registry_as_the_mode_says(docker_host, any_host, fleet):
    if docker_host is None:
        assert not any_host.exists("docker"), "no Docker here, so nothing for it to trust"
        return
    insecure = any_host.check_output(f"docker info --format {shlex.quote(INSECURE_REGISTRIES_FORMAT)}").split()
    assert (fleet.registry_address in insecure) != fleet.server.settings.registry_tls, insecure


def test_docker_has_the_registry_ca_in_tls_mode(docker_host, any_host, fleet):
    settings = fleet.server.settings
    ca = any_host.file(registry_files.client_ca_path(settings))
    if docker_host is None or not settings.registry_tls:
        assert not ca.exists, "a plain-HTTP registry needs no CA file (regdeploy removes its own)"
        return
    assert ca.is_file and ca.user == "root"
    assert ca.content_string == Path(security.ca_path(settings)).read_text()


def test_docker_is_logged_in_when_the_registry_requires_it(docker_host, any_host, fleet):
    settings = fleet.server.settings
    config = any_host.file(registry_files.DOCKER_CONFIG)
    auths = json.loads(config.content_string).get("auths", {}) if config.exists else {}
    wanted = docker_host is not None and settings.registry_auth and settings.registry_docker_login
    assert (fleet.registry_address in auths) == wanted, auths
    if wanted:
        assert config.mode == 0o600 and config.user == "root"


def test_each_local_users_docker_is_logged_in_as_them(docker_host, any_host, inventory_host, fleet):
    """registry_login_local_users: their own ~/.docker/config.json, theirs and 0600, which their Docker
    uses: `docker login` as them finds the registry's credentials already there (no prompt)."""
    settings = inventory_host.settings
    users = settings.registry_login_local_users
    if not (docker_host is not None and users and fleet.server.settings.registry_auth and settings.registry_docker_login):
        return
    for user in users:
        home = any_host.user(user).home
        config = any_host.file(f"{home}/.docker/config.json")
        assert config.exists, f"{user} on {inventory_host.name} is not logged in"
        assert config.user == user and config.mode == 0o600
        assert fleet.registry_address in json.loads(config.content_string).get("auths", {})
        # The credentials are good: docker login with none given logs in from the saved ones.
        said = any_host.run(f"runuser -u {user} -- env DOCKER_CONFIG={home}/.docker docker login "
                            f"{fleet.registry_address} </dev/null")
        assert said.rc == 0 and "Login Succeeded" in said.stdout, said.stdout + said.stderr


def test_docker_lists_the_pull_through_cache_as_a_mirror_exactly_when_it_runs(docker_host, inventory_host):
    if docker_host is None:
        return
    settings = inventory_host.settings
    mirrors = json.loads(docker_host.check_output("docker info --format '{{json .RegistryConfig.Mirrors}}'") or "[]")
    listed = [m.rstrip("/") for m in mirrors or []]
    if settings.proxy_mirror:
        assert settings.proxy_mirror in listed, mirrors
    for stale in settings.stale_mirrors:
        assert stale not in listed, mirrors

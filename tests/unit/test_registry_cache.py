"""The pull-through cache (registry_proxy_remote_url), decided without a host: its settings, what
every host's daemon.json gets, its cache.yml (credentials quoted, kept from the logs), its fact."""

from __future__ import annotations

import re

import pytest
import yaml

from regdeploy import credentials, daemon_config, security
from regdeploy.credentials import CredentialError
from regdeploy.facts import DockerHostState
from regdeploy.host_state import HostState
from regdeploy.registry_files import fact_checks, registry_config
from regdeploy.settings import ConfigError, cache_settings, validate_hosts
from regdeploy.registry_run import cache_facts

UPSTREAM = "https://upstream.example:443/"


def fleet(server=None, client=None, shared=None):
    shared = {"registry_proxy_remote_url": UPSTREAM, **(shared or {})}
    return validate_hosts([("reg1", {**shared, **(server or {})}, {"registry_servers"}),
                           ("c1", {**shared, **(client or {})}, {"docker_clients"})], check_files=False)


def test_the_cache_is_a_registry_of_its_own_beside_the_registry():
    server = fleet()["reg1"]
    cache = cache_settings(server)
    assert (cache.registry_container_name, cache.registry_port, cache.registry_data_dir) == \
        ("registry-cache", 5002, "/var/lib/registry-cache")
    assert cache.registry_config_path == "/etc/regdeploy/cache.yml" != server.registry_config_path
    assert cache.registry_address == "reg1:5002" and server.registry_address == "reg1:5000"
    # No accounts on a mirror (Docker cannot log in to one), no deletes, no published metrics.
    assert not (cache.registry_auth or cache.registry_allow_delete or cache.registry_metrics_port)


@pytest.mark.parametrize("shared,mirrors", [
    ({}, ("http://reg1:5002",)),
    ({"registry_tls": True}, ("https://reg1:5002",)),
    ({"registry_mirrors": ["https://m.example"]}, ("https://m.example", "http://reg1:5002")),
    ({"registry_proxy_remote_url": "", "registry_mirrors": ["https://m.example"]}, ("https://m.example",)),
    ({"registry_proxy_port": 6000, "registry_host": "registry.lan"}, ("http://registry.lan:6000",)),
])
def test_every_docker_host_lists_the_cache_in_registry_mirrors(shared, mirrors):
    for settings in fleet(shared=shared).values():
        assert settings.docker_mirrors == mirrors
    state = HostState(daemon_json_kind="present", daemon_json_detail="644",
                      daemon_json='{"registry-mirrors": ["https://own.example"]}', active=True, trusted=None)
    plan = daemon_config.plan_daemon_json(state, "/etc/docker/daemon.json", "reg1:5000", mirrors, "c1")
    # Merged after what is there, and a reload: registry-mirrors is one of the reloadable keys.
    assert plan.action == "reload"
    assert yaml.safe_load(plan.content)["registry-mirrors"] == ["https://own.example", *mirrors]


@pytest.mark.parametrize("data,expected", [
    ({"registry_proxy_port": 5000}, "registry_proxy_port=5000 is also registry_port"),
    ({"registry_proxy_port": 9100, "registry_metrics_port": 9100}, "registry_proxy_port=9100 is also registry_metrics_port"),
    ({"registry_proxy_container_name": "registry"}, "registry_proxy_container_name='registry' is also registry_container_name"),
    ({"registry_proxy_data_dir": "/var/lib/registry"}, "registry_proxy_data_dir='/var/lib/registry' is also registry_data_dir"),
    ({"registry_proxy_remote_url": "upstream.example"}, "registry_proxy_remote_url='upstream.example' must be an http(s):// URL"),
])
def test_shapes_that_cannot_work_are_refused(data, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        fleet(shared=data)


def test_hosts_must_agree_on_the_cache():
    with pytest.raises(ConfigError, match="disagree on registry_proxy_port"):
        fleet(client={"registry_proxy_port": 5003})


def test_the_upstream_password_comes_from_the_environment_or_a_private_file(tmp_path, monkeypatch):
    monkeypatch.delenv(credentials.PROXY_ENV, raising=False)
    monkeypatch.setattr(security, "_passwords", {})
    path = tmp_path / "proxy-password"
    data = {"registry_proxy_username": "puller", "registry_proxy_password_file": str(path)}
    with pytest.raises(ConfigError, match="no password for the upstream account 'puller'"):
        validate_hosts([("reg1", {"registry_proxy_remote_url": UPSTREAM, **data}, {"registry_servers"})])
    path.write_text("from: the file\nsecond line ignored\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="has mode 644: others may read"):
        validate_hosts([("reg1", {"registry_proxy_remote_url": UPSTREAM, **data}, {"registry_servers"})])
    path.chmod(0o600)
    assert credentials.load_proxy_password("puller", str(path), {}) == "from: the file"
    assert credentials.load_proxy_password("puller", str(path), {credentials.PROXY_ENV: "env"}) == "env"
    with pytest.raises(CredentialError, match="one line"):
        credentials.load_proxy_password("puller", str(path), {credentials.PROXY_ENV: "a\nb"})


@pytest.mark.parametrize("password", ['plain', 'with "quotes" and: colons', "#hash 'single' \\ back", "- [a] {b}"])
def test_cache_yml_carries_the_upstream_and_its_credentials_as_yaml_strings(password, monkeypatch):
    monkeypatch.setenv(credentials.PROXY_ENV, password)
    monkeypatch.setattr(security, "_passwords", {})  # read once per process otherwise
    server = fleet(shared={"registry_proxy_username": "puller"})["reg1"]
    config = yaml.safe_load(registry_config(cache_settings(server)))
    assert config["proxy"] == {"remoteurl": UPSTREAM.rstrip("/"), "username": "puller", "password": password}
    # The registry's own config.yml has no proxy section: it stays a registry one pushes to.
    assert "proxy" not in yaml.safe_load(registry_config(server))


def test_without_an_account_the_cache_yml_has_no_credentials():
    config = yaml.safe_load(registry_config(cache_settings(fleet()["reg1"])))
    assert config["proxy"] == {"remoteurl": UPSTREAM.rstrip("/")}


def test_the_server_fact_reads_the_cache_or_looks_for_one_left_behind():
    with_cache, without = fleet()["reg1"], fleet(shared={"registry_proxy_remote_url": ""})["reg1"]
    assert cache_facts(with_cache) == {"cache": ("/etc/regdeploy/cache.yml", "/var/lib/registry-cache",
                                                 "registry:2", "registry-cache", 5002)}
    assert cache_facts(without) == {"cache_name": "registry-cache"}
    # Both read cache.yml's hash (to remove a stale one), and Docker hosts the cache's CA in TLS mode.
    assert ("file", "cache_config", "/etc/regdeploy/cache.yml") in fact_checks(without)
    tls_client = fleet(shared={"registry_tls": True})["c1"]
    assert ("file", "proxy_ca", "/etc/docker/certs.d/reg1:5002/ca.crt") in fact_checks(tls_client)
    command = DockerHostState().command("/etc/docker/daemon.json", registry=("a", "b", "registry:2", "registry", 5000),
                                        **cache_facts(with_cache))
    assert "sed 's/^/registry./'" in command and "sed 's/^/cache./'" in command
    assert "cache_left" not in command
    command = DockerHostState().command("/etc/docker/daemon.json", registry=("a", "b", "registry:2", "registry", 5000),
                                        **cache_facts(without))
    assert "sed 's/^/cache./'" not in command and "echo cache_left=yes" in command


def test_the_fact_parses_the_cache_apart_from_the_registry():
    state = DockerHostState().process(["registry.config=aaa", "registry.data_dir=data", "registry.cache_left=yes",
                                       "cache.config=bbb", "cache.data_dir=empty", "cache.holder=registry-cache",
                                       "daemon.json=absent"])
    assert state.registry.config_sha256 == "aaa" and state.registry.cache_left
    assert state.cache.config_sha256 == "bbb" and state.cache.data_dir == "empty"
    assert state.cache.port_holders == ("registry-cache",)


@pytest.mark.parametrize("shared,listed,expected", [
    # The cache gone: its entry goes, the operator's stay.
    ({"registry_proxy_remote_url": ""}, ["https://own.example", "http://reg1:5002"], ["https://own.example"]),
    # TLS switched on: the plain-HTTP entry is replaced by the https one.
    ({"registry_tls": True}, ["http://reg1:5002", "https://own.example"], ["https://own.example", "https://reg1:5002"]),
    # The operator lists the cache's URL themselves: theirs to keep.
    ({"registry_proxy_remote_url": "", "registry_mirrors": ["http://reg1:5002"]}, ["http://reg1:5002"],
     ["http://reg1:5002"]),
])
def test_a_cache_no_longer_run_leaves_registry_mirrors(shared, listed, expected):
    settings = fleet(shared=shared)["c1"]
    merged = daemon_config.merge({"registry-mirrors": listed}, "reg1:5000", settings.docker_mirrors,
                                 settings.registry_tls, settings.stale_mirrors)
    assert merged["registry-mirrors"] == expected


def test_a_daemon_json_without_the_cache_is_left_alone_when_there_is_none():
    settings = fleet(shared={"registry_proxy_remote_url": ""})["c1"]
    assert daemon_config.merge({"debug": True}, "reg1:5000", settings.docker_mirrors, False, settings.stale_mirrors) \
        == {"debug": True, "insecure-registries": ["reg1:5000"]}

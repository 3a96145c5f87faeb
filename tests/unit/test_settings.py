"""Inventory data: defaults, the registry address, and validation before any host is touched."""

import re

import pytest

from regdeploy.variables import DEFAULTS
from regdeploy.settings import ConfigError, registry_address, validate_hosts

SERVER = ("reg1", {}, {"registry_servers"})
CLIENTS = [("c1", {}, {"docker_clients"}), ("c2", {}, {"docker_clients"})]


def test_defaults_apply_and_address_is_the_server_name():
    settings = validate_hosts([SERVER, *CLIENTS])
    assert settings["c1"].registry_address == "reg1:5000"
    assert settings["reg1"].is_server and not settings["c1"].is_server
    assert settings["c2"].registry_image == DEFAULTS["registry_image"]
    assert settings["c2"].docker_install_source == "distro"


def test_registry_host_and_port_override_the_address():
    data = {"registry_host": "registry.example.com", "registry_port": "5001"}  # --data gives strings
    settings = validate_hosts([("reg1", data, {"registry_servers"}), ("c1", data, {"docker_clients"})])
    assert settings["c1"].registry_address == "registry.example.com:5001"
    assert settings["c1"].registry_port == 5001


def test_registry_address_is_host_colon_port():
    assert registry_address("r", 5000) == "r:5000"


@pytest.mark.parametrize("servers,expected", [
    ([], "no host in the group 'registry_servers'"),
    # Several servers only as replicas on shared storage (tests/unit/test_replicas.py).
    ([SERVER, ("reg2", {}, {"registry_servers"})], "each replica would keep its own images"),
])
def test_one_registry_server_unless_replicas_share_storage(servers, expected):
    with pytest.raises(ConfigError, match=expected):
        validate_hosts([*servers, *CLIENTS])


@pytest.mark.parametrize("data,expected", [
    ({"registry_port": 0}, "registry_port=0 is out of range"),
    ({"registry_port": 70000}, "registry_port=70000 is out of range"),
    ({"registry_port": "50x"}, "registry_port='50x' is not a whole number"),
    ({"registry_port": True}, "is not a whole number"),
    ({"registry_host": "bad host"}, "registry_host='bad host' is not a host name"),
    ({"docker_install_source": "snap"}, "docker_install_source='snap' is unknown"),
    ({"registry_image": "Registry:2"}, "uppercase letters are not allowed"),
    ({"registry_restart_policy": "sometimes"}, "not a Docker restart policy"),
    ({"registry_data_dir": "relative/dir"}, "registry_data_dir='relative/dir' must be an absolute path"),
    ({"registry_mirrors": ["mirror.example"]}, "must be an http(s):// URL"),
    ({"registry_seed_images": ["ok:1", "Bad:1"]}, "registry_seed_images: uppercase"),
    ({"registry_container_name": "-x"}, "not a valid container name"),
    ({"registry_metrics_port": 5000}, "registry_metrics_port=5000 is also registry_port"),
    ({"registry_gc_schedule": "Sun; reboot"}, "is not a systemd calendar expression"),
])
def test_bad_values_name_the_variable_and_the_host(data, expected):
    with pytest.raises(ConfigError) as excinfo:
        validate_hosts([SERVER, ("c1", data, {"docker_clients"})])
    message = str(excinfo.value)
    assert expected in message
    assert "host 'c1'" in message
    assert "nothing was changed on any host" in message


def test_archive_paths_must_exist_on_the_controller(tmp_path):
    missing = tmp_path / "nope.tar"
    with pytest.raises(ConfigError, match="registry_image_archive=.*does not exist on the controller"):
        validate_hosts([("reg1", {"registry_image_archive": str(missing)}, {"registry_servers"})])


def test_archive_checksum_is_checked(tmp_path):
    archive = tmp_path / "image.tar"
    archive.write_bytes(b"not really an image")
    with pytest.raises(ConfigError, match="has SHA-256"):
        validate_hosts([("reg1", {"registry_image_archive": str(archive),
                                  "registry_image_archive_sha256": "0" * 64}, {"registry_servers"})])


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as excinfo:
        validate_hosts([SERVER, ("c1", {"registry_port": 0, "docker_install_source": "x"}, {"docker_clients"})])
    assert "registry_port" in str(excinfo.value) and "docker_install_source" in str(excinfo.value)


def test_hosts_must_agree_on_the_registry_address():
    with pytest.raises(ConfigError, match="disagree on the registry address"):
        validate_hosts([SERVER, ("c1", {"registry_port": 5001}, {"docker_clients"})])


AUTH = {"registry_tls": True, "registry_auth": True, "registry_users": ["ci"]}


@pytest.mark.parametrize("data,expected", [
    ({"registry_auth": True, "registry_users": ["ci"]},
     "registry_auth needs registry_tls=true: without TLS, Docker sends every password in clear"),
    ({"registry_tls": True, "registry_auth": True}, "registry_auth needs at least one user"),
    ({**AUTH, "registry_login_user": "ops"}, "registry_login_user='ops' is not one of registry_users (ci)"),
    ({"registry_tls": True, "registry_tls_cert": "/c.pem"}, "go together: give all three"),
    ({**AUTH, "registry_docker_login": False, "registry_seed_images": ["busybox:1"]},
     "seeding the registry with registry_auth needs registry_docker_login=true"),
    ({"registry_tls": "maybe"}, "registry_tls='maybe' is neither on nor off"),
    ({"registry_users": ["a:b"]}, "registry_users entry 'a:b' is not a user name"),
])
def test_secure_modes_refuse_what_cannot_work(data, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        validate_hosts([("reg1", data, {"registry_servers"})], check_files=False)


def test_hosts_must_agree_on_the_mode():
    with pytest.raises(ConfigError, match="disagree on registry_tls"):
        validate_hosts([SERVER, ("c1", {"registry_tls": "true"}, {"docker_clients"})])


def test_passwords_are_checked_before_any_host_is_touched(tmp_path, monkeypatch):
    monkeypatch.delenv("REGDEPLOY_PASSWORD_CI", raising=False)
    data = {**AUTH, "registry_password_file": str(tmp_path / "absent")}
    with pytest.raises(ConfigError, match="no password for registry user 'ci': set REGDEPLOY_PASSWORD_CI"):
        validate_hosts([("reg1", data, {"registry_servers"})])
    monkeypatch.setenv("REGDEPLOY_PASSWORD_CI", "s3cret")
    settings = validate_hosts([("reg1", data, {"registry_servers"})])["reg1"]
    assert settings.login_user == "ci" and "s3cret" not in repr(settings)


def test_the_certificate_covers_registry_host_the_server_name_and_its_address():
    settings = validate_hosts([("reg1", {"registry_host": "registry.example.com", "ssh_hostname": "10.0.0.5",
                                         "registry_tls_names": "alias.example.com"}, {"registry_servers"}),
                               ("c1", {"registry_host": "registry.example.com",
                                       "registry_tls_names": "alias.example.com"}, {"docker_clients"})])
    assert settings["c1"].tls_names == ("registry.example.com", "reg1", "10.0.0.5", "alias.example.com")

"""Which runtimes a host gets, and what containerd's and Podman's files become (no host)."""

import tomllib

import pytest

from regdeploy import runtime_config, runtimes
from regdeploy.runtime_config import RuntimeConfigError, plan_containerd_config

DEBIAN_1_7_CONFIG = '''version = 2
# the operator's comment
root = "/srv/containerd"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"

  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = true
'''


@pytest.mark.parametrize("requested,source,tools,expected", [
    ((), "distro", set(), ("docker",)),                                   # regdeploy installs Docker
    ((), "distro", {"dockerd", "containerd"}, ("docker",)),               # Docker's containerd stays Docker's
    ((), "none", {"containerd"}, ("containerd",)),                        # a Kubernetes node
    ((), "none", {"podman"}, ("podman",)),
    ((), "none", {"dockerd", "podman", "containerd"}, ("docker", "podman")),
    ((), "none", set(), ()),
    (("containerd",), "distro", {"dockerd"}, ("containerd",)),           # what is asked for, as asked
])
def test_runtimes_are_detected_or_taken_as_given(requested, source, tools, expected):
    assert runtimes.resolve(requested, source, tools) == expected


@pytest.mark.parametrize("os_release,needed", [
    ({"ID": "debian", "VERSION_ID": "12"}, False),
    ({"ID": "debian", "VERSION_ID": "13"}, True),
    ({"ID": "debian", "VERSION_ID": ""}, True),  # sid and testing have no VERSION_ID
    ({"ID": "ubuntu", "VERSION_ID": "24.04"}, False),
    ({}, False),
])
def test_docker_cli_is_needed_from_debian_13_on(os_release, needed):
    assert runtimes.needs_docker_cli(os_release) == needed


@pytest.mark.parametrize("tls", [False, True])
def test_hosts_toml_and_podman_dropin(tls):
    hosts = tomllib.loads(runtime_config.hosts_toml("registry:5000", tls))
    scheme = "https" if tls else "http"
    assert hosts["server"] == f"{scheme}://registry:5000"
    entry = hosts["host"][f"{scheme}://registry:5000"]
    assert entry["capabilities"] == ["pull", "resolve", "push"]
    assert entry.get("ca") == ("/etc/containerd/certs.d/registry:5000/ca.crt" if tls else None)
    dropin = tomllib.loads(runtime_config.podman_dropin("registry:5000", tls))
    assert dropin == {"registry": [{"location": "registry:5000", "insecure": not tls}]}


@pytest.mark.parametrize("major,version,table", [
    (1, 2, "io.containerd.grpc.v1.cri"), (2, 3, "io.containerd.cri.v1.images"), (None, 2, "io.containerd.grpc.v1.cri"),
])
def test_an_absent_config_gets_the_layout_of_its_containerd(major, version, table):
    plan = plan_containerd_config(None, major, "host 'c'")
    config = tomllib.loads(plan.content)
    assert config == {"version": version,
                      "plugins": {table: {"registry": {"config_path": "/etc/containerd/certs.d"}}}}
    assert plan_containerd_config(plan.content, major, "host 'c'").content is None


def test_config_path_joins_an_existing_config_and_keeps_everything_else():
    plan = plan_containerd_config(DEBIAN_1_7_CONFIG, 1, "host 'c'")
    assert "# the operator's comment" in plan.content and plan.content.startswith(DEBIAN_1_7_CONFIG.rstrip("\n"))
    before, after = tomllib.loads(DEBIAN_1_7_CONFIG), tomllib.loads(plan.content)
    assert after["plugins"]["io.containerd.grpc.v1.cri"].pop("registry") == {"config_path": "/etc/containerd/certs.d"}
    assert after == before
    assert plan_containerd_config(plan.content, 1, "host 'c'").content is None  # a second run: nothing


@pytest.mark.parametrize("text,message", [
    ("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/other\"\n",
     "sets config_path = '/etc/other'"),
    ("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\nendpoint = [\"x\"]\n",
     "old `mirrors`/`configs` tables"),
    ("[plugins.cri]\nx = 1\n", "layout version None"),
    ("version = 2\n[broken\n", "is not valid TOML"),
])
def test_configs_regdeploy_must_not_touch_are_refused(text, message):
    with pytest.raises(RuntimeConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_containerd_config(text, 1, "host 'c'")

"""Which runtimes a host gets, and what containerd's and Podman's files become (no host)."""

import tomllib

import pytest

from regdeploy import runtime_config, runtimes
from regdeploy.runtime_config import ContainerdLogin, RuntimeConfigError, plan_containerd_config

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
     "old `mirrors` or `configs.*.tls` tables"),
    ("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r:1\".tls]\ninsecure_skip_verify = true\n",
     "old `mirrors` or `configs.*.tls` tables"),
    ("[plugins.cri]\nx = 1\n", "layout version None"),
    ("version = 2\n[broken\n", "is not valid TOML"),
])
def test_configs_regdeploy_must_not_touch_are_refused(text, message):
    with pytest.raises(RuntimeConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_containerd_config(text, 1, "host 'c'")


def test_empty_tables_as_containerd_config_default_writes_them_are_not_refused():
    text = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ""\n'
            '  [plugins."io.containerd.grpc.v1.cri".registry.configs]\n'
            '  [plugins."io.containerd.grpc.v1.cri".registry.mirrors]\n')
    plan = plan_containerd_config(text, 1, "host 'c'")
    assert tomllib.loads(plan.content)["plugins"]["io.containerd.grpc.v1.cri"]["registry"] == {
        "config_path": "/etc/containerd/certs.d", "configs": {}, "mirrors": {}}


ADDRESS = "registry:5000"
MASKED_OTHER = ('[plugins."io.containerd.grpc.v1.cri".registry.configs."other:443".auth]\n'
                '  username = "them"\n  password = "<regdeploy: masked line 9>"\n')


@pytest.mark.parametrize("major,table", [(1, "io.containerd.grpc.v1.cri"), (2, "io.containerd.cri.v1.images")])
def test_credentials_go_in_with_the_password_left_for_the_host_and_stay(major, table):
    """The plan never holds the password: PASSWORD_ON_STDIN, which the apply script replaces."""
    plan = plan_containerd_config(None, major, "host 'c'", ADDRESS, ContainerdLogin("nodes", current=False))
    assert plan.login is True
    registry = tomllib.loads(plan.content)["plugins"][table]["registry"]
    assert registry == {"config_path": "/etc/containerd/certs.d",
                        "configs": {ADDRESS: {"auth": {"username": "nodes",
                                                       "password": runtime_config.PASSWORD_ON_STDIN}}}}
    # The next run reads it back masked, with the stamp current: nothing to do.
    masked = plan.content.replace(f'"{runtime_config.PASSWORD_ON_STDIN}"', runtime_config.MASKED.format(5))
    again = plan_containerd_config(masked, major, "host 'c'", ADDRESS, ContainerdLogin("nodes", current=True))
    assert again.content is None and again.login is None
    # A new password (the stamp no longer matches) or another account: written again.
    for login in (ContainerdLogin("nodes", current=False), ContainerdLogin("robot-a", current=True)):
        changed = plan_containerd_config(masked, major, "host 'c'", ADDRESS, login)
        assert changed.login is True and f'"{runtime_config.PASSWORD_ON_STDIN}"' in changed.content
        assert runtime_config.MASKED.format(5) not in changed.content
        assert f'username = "{login.user}"' in changed.content


def test_credentials_keep_every_other_line_and_others_secrets_masked():
    current = DEBIAN_1_7_CONFIG + "\n" + MASKED_OTHER
    plan = plan_containerd_config(current, 1, "host 'c'", ADDRESS, ContainerdLogin("nodes", current=False))
    lines = iter(plan.content.splitlines())
    assert all(line in lines for line in current.splitlines())  # every line as it was, in order, masked ones too
    after = tomllib.loads(plan.content)["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["configs"]
    assert after["other:443"] == {"auth": {"username": "them", "password": "<regdeploy: masked line 9>"}}
    assert after[ADDRESS]["auth"]["username"] == "nodes"


@pytest.mark.parametrize("ours", [True, False])
def test_credentials_leave_only_when_regdeploy_put_them_there(ours):
    """Without a login, regdeploy's credentials go (its stamp says they are its own); anyone else's stay."""
    login = plan_containerd_config(DEBIAN_1_7_CONFIG + "\n" + MASKED_OTHER, 1, "host 'c'", ADDRESS,
                                   ContainerdLogin("nodes", current=False))
    masked = login.content.replace(f'"{runtime_config.PASSWORD_ON_STDIN}"', runtime_config.MASKED.format(20))
    plan = plan_containerd_config(masked, 1, "host 'c'", ADDRESS, None, ours=ours)
    if not ours:
        assert plan.content is None
        return
    assert plan.login is False
    registry = tomllib.loads(plan.content)["plugins"]["io.containerd.grpc.v1.cri"]["registry"]
    assert list(registry["configs"]) == ["other:443"]  # the emptied tables went, the others stayed
    alone = plan_containerd_config(login.content.replace(MASKED_OTHER, ""), 1, "host 'c'", ADDRESS, None, ours=True)
    assert "configs" not in tomllib.loads(alone.content)["plugins"]["io.containerd.grpc.v1.cri"]["registry"]


def test_masked_line_pattern_reads_back_the_line_number():
    line = "  password " + "= " + runtime_config.MASKED.format(42)
    assert runtime_config.MASKED_LINE.search(line).group(1) == "42"

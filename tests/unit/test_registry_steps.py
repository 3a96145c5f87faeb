"""The server's registry operation and the Docker install it may ride on: which steps (a pure decision
from the fact), and the commands the folded operations yield, in order (facts in, commands out, no host)."""

from __future__ import annotations

import pytest
from pyinfra.api import FunctionCommand, StringCommand
from pyinfra.context import ctx_host

from regdeploy.registry_plan import ServerState
from regdeploy.settings import build_settings
from tasks.docker_engine import START_DOCKER, DaemonJsonWithInstall, Preload, install_and_start
from tasks.registry_server import RegistrySteps, archive_upload, image_preload, plan_steps, start_registry

CONFIG = "a" * 64
ARCHIVE = "/srv/images/registry-2.tar"
COLD = ServerState()  # no Docker yet: the fact reads nothing of the registry
CONVERGED = ServerState(config_sha256=CONFIG, data_dir="data", image_id="sha256:1", container={})


@pytest.mark.parametrize("observed, action, archive, preloaded, expected", [
    # A fresh server: its image came with the Docker install; the rest is one operation.
    (COLD, "create", True, True, RegistrySteps(create_dir=True, write_config=True, run=True)),
    # Docker there but not the image: upload and load it before the container starts.
    (COLD, "create", True, False, RegistrySteps(create_dir=True, write_config=True, load_archive=True, run=True)),
    (COLD, "create", False, False, RegistrySteps(create_dir=True, write_config=True, pull=True, run=True)),
    # Converged: nothing at all.
    (CONVERGED, "none", True, False, RegistrySteps()),
    (CONVERGED, "none", False, False, RegistrySteps()),
    # A new container may mean a new archive (an identical one is not sent again); a pulled image is
    # the operator's pin: not pulled again while it is there.
    (CONVERGED, "recreate", True, False, RegistrySteps(load_archive=True, run=True)),
    (CONVERGED, "recreate", False, False, RegistrySteps(run=True)),
    # The storage directory removed by hand under a running registry: made again, nothing else.
    (ServerState(config_sha256=CONFIG, data_dir="absent", image_id="sha256:1"), "none", True, False,
     RegistrySteps(create_dir=True)),
    # The image removed by hand under a running registry: loaded again, the container left alone.
    (ServerState(config_sha256=CONFIG, data_dir="data"), "none", True, False, RegistrySteps(load_archive=True)),
    (ServerState(config_sha256="b" * 64, data_dir="data", image_id="sha256:1"), "recreate", True, False,
     RegistrySteps(write_config=True, load_archive=True, run=True)),
])
def test_plan_steps(observed, action, archive, preloaded, expected):
    steps = plan_steps(observed, action, CONFIG, archive, preloaded)
    assert steps == expected
    assert bool(steps) == (expected != RegistrySteps())


def server_settings(**data):
    errors: list[str] = []
    built = build_settings("registry", data, "registry", True, errors, check_files=False)
    assert not errors, errors
    return built


def test_the_image_archive_rides_on_the_install_only_when_the_image_is_absent():
    settings = server_settings(registry_image_archive=ARCHIVE, registry_image_archive_sha256="0" * 64)
    preload = image_preload(settings, COLD)
    assert preload == archive_upload(settings)
    assert preload.dest == "/var/cache/regdeploy/registry-2.tar" and preload.src == ARCHIVE
    assert "docker load" in preload.then and "0" * 64 in preload.then
    assert image_preload(settings, None) == preload  # the fact read no registry side at all
    assert image_preload(settings, CONVERGED) is None
    assert image_preload(server_settings(), COLD) is None  # pulled, not loaded


def test_the_registry_operation_runs_its_steps_in_order_with_secrets_on_stdin_only():
    secret_config = "storage:\n  s3:\n    secretkey: s3cr3t\n"
    commands = list(start_registry._inner(data_dir="/var/lib/registry",
                                          config=(secret_config, "/etc/regdeploy/config.yml", "600", True),
                                          pull="docker pull -q registry:2", script="echo run",
                                          script_stdin="user = \"k:v\""))
    assert [type(c) for c in commands] == [StringCommand] * 4
    mkdir, config, pull, script = (c.get_raw_value() for c in commands)
    assert mkdir == "mkdir -p -m 755 /var/lib/registry"
    assert "s3cr3t" not in config and commands[1].connector_arguments["_stdin"] == secret_config
    assert "chmod 600" in config and 'mv -f "$staged" "$path"' in config
    assert pull == "docker pull -q registry:2"
    assert script == "echo run" and commands[3].connector_arguments["_stdin"] == "user = \"k:v\""


def test_a_config_without_secrets_is_written_by_its_command_alone():
    config = "version: 0.1\n"
    commands = list(start_registry._inner(config=(config, "/etc/regdeploy/config.yml", "644", False)))
    assert len(commands) == 1
    assert "version: 0.1" in commands[0].get_raw_value() and "chmod 644" in commands[0].get_raw_value()
    assert commands[0].connector_arguments.get("_stdin") is None


def shown(command) -> str:
    """A yielded command as pyinfra would run it (a str becomes a StringCommand), or a callback's name."""
    if isinstance(command, FunctionCommand):
        return command.function.__name__
    return command.get_raw_value() if isinstance(command, StringCommand) else command.strip()


class FactsOnly:
    """Just enough of a pyinfra host for an operation's generator: its facts, its temporary names."""

    def __init__(self, facts: dict):
        self.facts = facts
        self.name = "registry"

    def get_fact(self, fact, **kwargs):
        return self.facts[fact]

    def get_temp_filename(self, key: str | None = None) -> str:
        return "/tmp/pyinfra-0123abcd"

    def noop(self, description: str) -> None:
        pass


def test_the_install_sends_the_archive_beside_apt_and_loads_it_once_docker_runs():
    preload = Preload(src=ARCHIVE, dest="/var/cache/regdeploy/registry-2.tar", then="LOAD", what="registry:2")
    # No facts: the packages to install come from the DockerHostState fact, dpkg is not asked again.
    with ctx_host.use(FactsOnly({})):
        commands = list(install_and_start._inner(packages=["docker.io", "curl"], preload=preload))
    raw = [shown(c) for c in commands]
    # The upload starts first and is waited for only after apt and the start of Docker.
    assert isinstance(commands[0], FunctionCommand) and raw[0] == "start"
    assert raw[1] == "apt-get update"
    assert raw[2] == ('DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Options::="--force-confdef" '
                      '-o Dpkg::Options::="--force-confold" install docker.io curl')
    assert raw[3] == START_DOCKER
    assert raw[4] == "finish" and isinstance(commands[4], FunctionCommand)
    # Moved into place and loaded by one command; a failed move stops before the load.
    assert raw[5].startswith("mkdir -p /var/cache/regdeploy && mv -f /tmp/pyinfra-")
    assert raw[5].endswith("chown 0:0 /var/cache/regdeploy/registry-2.tar && chmod 600 "
                           "/var/cache/regdeploy/registry-2.tar || exit 1 \nLOAD")
    assert len(commands) == 6


def test_an_install_without_preload_is_apt_and_the_start_of_docker():
    with ctx_host.use(FactsOnly({})):
        commands = [shown(c) for c in install_and_start._inner(packages=["docker-ce", "docker-ce-cli"])]
    assert commands[0] == "apt-get update" and commands[1].endswith(" install docker-ce docker-ce-cli")
    assert commands[2] == START_DOCKER and len(commands) == 3


def test_daemon_json_goes_in_before_apt_and_is_confirmed_as_docker_starts():
    with ctx_host.use(FactsOnly({})):
        commands = [shown(c) for c in install_and_start._inner(
            packages=["docker.io"], daemon_json=DaemonJsonWithInstall(before="WRITE", after="START AND CONFIRM"))]
    # The confirming script starts Docker itself, so a Docker that will not start with the file undoes it.
    assert commands[0] == "WRITE" and commands[1] == "apt-get update" and commands[2].endswith(" install docker.io")
    assert commands[3] == "START AND CONFIRM" and len(commands) == 4

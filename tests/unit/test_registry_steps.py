"""The server's registry operation and the Docker install it may ride on: which steps (a pure decision
from the fact), and the commands the folded operations yield, in order (facts in, commands out, no host)."""

from __future__ import annotations

import os
import subprocess

import pytest
from pyinfra.api import FunctionCommand, StringCommand
from pyinfra.connectors.util import CommandOutput, OutputLine
from pyinfra.context import ctx_host

from regdeploy.registry_plan import ServerState
from regdeploy.settings import build_settings
from regdeploy.docker_packages import START_DOCKER, DaemonJsonWithInstall, Preload
from regdeploy.operations import BackgroundUpload, install_and_start, start_registry
from regdeploy.registry_run import RegistrySteps, archive_upload, image_preload, plan_steps

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
    assert [type(c) for c in commands] == [StringCommand] * 3
    config, pull, script = (c.get_raw_value() for c in commands)
    # A new storage directory is made by the config's command (one round trip), and stops it if it fails.
    assert config.startswith("mkdir -p -m 755 /var/lib/registry || exit 1 \n")
    assert "s3cr3t" not in config and commands[0].connector_arguments["_stdin"] == secret_config
    assert "chmod 600" in config and 'mv -f "$staged" "$path"' in config
    assert pull == "docker pull -q registry:2"
    assert script == "echo run" and commands[2].connector_arguments["_stdin"] == "user = \"k:v\""


def test_a_storage_directory_alone_is_its_own_command():
    commands = [c.get_raw_value() for c in start_registry._inner(data_dir="/var/lib/registry")]
    assert commands == ["mkdir -p -m 755 /var/lib/registry"]


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
    preload = Preload(src=ARCHIVE, dest="/var/cache/regdeploy/registry-2.tar", sha256="0" * 64, then="CHECK AND LOAD",
                      load="LOAD", what="registry:2")
    # No facts: the packages to install come from the DockerHostState fact, dpkg is not asked again.
    with ctx_host.use(FactsOnly({})):
        commands = list(install_and_start._inner(packages=["docker.io", "curl"], preload=preload))
    raw = [shown(c) for c in commands]
    # The upload starts first and is waited for only after apt and the start of Docker, all one command.
    assert isinstance(commands[0], FunctionCommand) and raw[0] == "start"
    assert raw[1].startswith("# Rendered by regdeploy (templates/install-docker.sh.j2)")
    assert ('DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Options::="--force-confdef" '
            '-o Dpkg::Options::="--force-confold" install docker.io curl || exit 1') in raw[1]
    assert raw[1].endswith("\n" + START_DOCKER)
    assert raw[2] == "finish" and isinstance(commands[2], FunctionCommand)
    # Moved into place and loaded by one command (the upload checked it); a failed move stops the load.
    assert raw[3].startswith("mkdir -p /var/cache/regdeploy && mv -f /tmp/pyinfra-")
    assert raw[3].endswith("chown 0:0 /var/cache/regdeploy/registry-2.tar && chmod 600 "
                           "/var/cache/regdeploy/registry-2.tar || exit 1 \nLOAD")
    assert len(commands) == 4


def install_script(daemon_json=None, packages=("docker.io",)) -> str:
    with ctx_host.use(FactsOnly({})):
        commands = [shown(c) for c in install_and_start._inner(packages=list(packages), daemon_json=daemon_json)]
    assert len(commands) == 1
    return commands[0]


@pytest.mark.parametrize("failing, ran", [
    ("", ["WRITE", "apt-get update", "apt-get install docker.io docker-cli", "START AND CONFIRM"]),
    # A failed update or install stops there: Docker is not started, the file not confirmed (it stays:
    # valid, and the next run installs and confirms).
    ("update", ["WRITE", "apt-get update"]),
    ("install", ["WRITE", "apt-get update", "apt-get install docker.io docker-cli"]),
])
def test_the_install_is_one_command_that_stops_at_the_first_failure(tmp_path, failing, ran):
    log = tmp_path / "log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # apt-get as pyinfra words it (`apt-get -y -o ... install P...`): logged without its options.
    (bin_dir / "apt-get").write_text('#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do [ "$1" = -o ] && shift; shift; done\n'
                                     'echo "apt-get $*" >> "$LOG"\n[ "$1" != "$FAILING" ]\n')
    (bin_dir / "apt-get").chmod(0o755)
    script = install_script(DaemonJsonWithInstall(before='echo WRITE >> "$LOG"',
                                                            after='echo START AND CONFIRM >> "$LOG"'),
                            packages=("docker.io", "docker-cli"))
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log),
                                 "FAILING": failing})
    assert result.returncode == (1 if failing else 0), result.stderr
    assert log.read_text().splitlines() == ran


class UploadHost:
    """What BackgroundUpload needs of a pyinfra host: put_file, run_shell_command (the check), log."""

    def __init__(self, sent: bool, checked: bool):
        self.sent, self.checked, self.calls, self.logged = sent, checked, [], []

    def put_file(self, src, dest):
        self.calls.append(("put", src, dest))
        return self.sent

    def run_shell_command(self, command):
        self.calls.append(("check", command.get_raw_value()))
        return self.checked, CommandOutput([OutputLine("stderr", "regdeploy: does not match")] if not self.checked
                                           else [])

    def log(self, message, log_func=None):
        self.logged.append(message)


@pytest.mark.parametrize("sent, checked, ok", [(True, True, True), (True, False, False), (False, True, False)])
def test_the_background_upload_checks_its_copy_before_it_is_used(sent, checked, ok):
    host = UploadHost(sent, checked)
    upload = BackgroundUpload(ARCHIVE, "/tmp/pyinfra-0123abcd", "0" * 64)
    assert upload.start(None, host) is True
    assert upload.finish(None, host) is ok
    assert host.calls[0] == ("put", ARCHIVE, "/tmp/pyinfra-0123abcd")
    # The check runs only on a copy that arrived, against the pinned hash, on the temporary file.
    assert len(host.calls) == (2 if sent else 1)
    if sent:
        assert "'" + "0" * 64 + "  /tmp/pyinfra-0123abcd' | sha256sum -c --quiet -" in host.calls[1][1]
    assert bool(host.logged) != ok



"""Install Docker (distro docker.io, Docker's apt repository, or nothing) and keep it running."""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass

import gevent
from pyinfra import host, logger
from pyinfra.api import FunctionCommand, QuoteString, StringCommand, deploy, operation
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.apt import noninteractive_apt
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import server, systemd

from regdeploy import load_balancer, runtimes
from regdeploy.rendering import render
from regdeploy.settings import Settings

PACKAGES = {
    "distro": ["docker.io"],
    "docker-ce": ["docker-ce", "docker-ce-cli", "containerd.io"],
    "none": [],
}
# From Debian 13 on, docker.io only recommends the `docker` command (runtimes.needs_docker_cli).
DOCKER_CLI = "docker-cli"
APPARMOR = "apparmor"
DOCKER_CE_KEYRING = "/etc/apt/keyrings/docker.gpg"
DOCKER_CE_SOURCE = "/etc/apt/sources.list.d/docker.sources"


# The registry server's readiness check and catalog fact use curl (with docker_install_source
# "none", nothing is installed: the server must have curl already).
SERVER_PACKAGES = ["curl"]


def packages_for(settings: Settings, os_release: dict[str, str] | None = None,
                 apparmor: bool | None = None) -> list[str]:
    """What to install. `os_release` and `apparmor` (the fact's: the kernel enforces AppArmor): Debian
    13 and later need docker-cli for the `docker` command beside docker.io; a kernel with AppArmor
    needs apparmor_parser, or Docker 20.10 refuses to run any container ("the docker-default profile
    could not be loaded"): docker.io only recommends apparmor, so hosts that skip recommends lack it
    (found on the VM tier: Debian's cloud kernel enables AppArmor). None: everything that might be
    needed (what to ask dpkg)."""
    packages = list(PACKAGES[settings.docker_install_source])
    if settings.docker_install_source == "distro" and (os_release is None or runtimes.needs_docker_cli(os_release)):
        packages.append(DOCKER_CLI)
    if packages and apparmor is not False:
        packages.append(APPARMOR)
    return packages + SERVER_PACKAGES if packages and settings.is_server else packages


def packages_to_check(settings: Settings) -> list[str]:
    """What the DockerHostState fact asks dpkg about: the packages to install and, for docker-ce,
    Debian's docker.io (a host that runs it is not switched under its containers); the load
    balancer's on the registry_lb host (which gets no Docker unless it also uses the registry)."""
    docker = packages_for(settings) + (["docker.io"] if settings.docker_install_source == "docker-ce" else []) \
        if settings.uses_registry else []
    return docker + (list(load_balancer.PACKAGES) if settings.is_lb else [])


def missing_packages(settings: Settings, state: dict, wanted: list[str] | None = None) -> list[str]:
    """The packages this host still needs (from the DockerHostState fact read before any change);
    `wanted`: packages_for() of this host, if already known."""
    wanted = packages_for(settings, state["os"], state["apparmor"]) if wanted is None else wanted
    return [name for name in wanted if not state["packages"].get(name)]


def installs_engine(settings: Settings, state: dict) -> bool:
    """Whether this run installs Docker's engine package (docker.io or docker-ce) on the host."""
    engine = PACKAGES[settings.docker_install_source][:1]
    return bool(engine) and not state["packages"].get(engine[0])


@dataclass(frozen=True)
class Preload:
    """A file for the host to receive while the fleet installs Docker, and the command that uses it once
    Docker runs (the registry server's image archive and its `docker load`)."""
    src: str
    dest: str
    sha256: str  # what the copy on the host must hash to: checked by the upload, before it is moved
    then: str  # for a copy sent some other way (files.put): check `dest`, then use it
    load: str  # use `dest`, once the upload has checked it
    what: str  # for the log: "registry:2 from /var/cache/regdeploy/registry-2.tar"


@dataclass(frozen=True)
class DaemonJsonWithInstall:
    """daemon.json going in with the install (daemon_config.write_before_install): `before` writes it
    before apt, `after` starts Docker if the package did not and confirms dockerd took it."""
    before: str
    after: str


# Debian's docker.io starts and enables Docker itself; docker-ce's packages may not (policy-rc.d).
# Asked first: `systemctl enable` runs Debian's SysV sync script, half a second even when enabled.
START_DOCKER = "systemctl is-active -q docker && systemctl is-enabled -q docker || systemctl enable --now docker"


@operation()
def install_and_start(packages: list[str], preload: Preload | None = None,
                      daemon_json: DaemonJsonWithInstall | None = None):
    """apt-get update and install `packages` (the missing ones, from the fact), then start Docker and
    enable it at boot, in one operation: each operation waits for every host, so one more would cost the
    whole fleet a round trip. `preload`: sent and checked while apt runs, used once Docker runs.
    `daemon_json`: written before apt, confirmed once Docker runs."""
    # A random name in the login user's temporary directory: none another user could have prepared.
    upload = BackgroundUpload(preload.src, host.get_temp_filename(), preload.sha256) if preload else None
    if upload:
        yield FunctionCommand(upload.start, (), {})
    yield StringCommand(render(
        "install-docker.sh.j2", before=daemon_json.before if daemon_json else "",
        install=noninteractive_apt(f"install {' '.join(shlex.quote(p) for p in packages)}"),
        after=daemon_json.after if daemon_json else START_DOCKER).strip())
    if upload and preload:
        yield FunctionCommand(upload.finish, (), {})
        directory = posixpath.dirname(preload.dest)
        # Moved into place and loaded in one command: one round trip fewer on the server's path.
        yield StringCommand("mkdir", "-p", QuoteString(directory), "&&", "mv", "-f",
                            QuoteString(upload.temp), QuoteString(preload.dest), "&&", "chown", "0:0",
                            QuoteString(preload.dest), "&&", "chmod", "600", QuoteString(preload.dest),
                            "||", "exit", "1", "\n" + preload.load)


class BackgroundUpload:
    """A file sent over its own SFTP channel while the operation's commands run on the same connection
    (pyinfra runs a host's commands one at a time; its connections are gevent-friendly): the registry
    image archive travels during the server's apt-get, as it would beside a by-hand install. It goes
    to the login user's temporary directory (SFTP never runs through sudo), is checked there against
    its SHA-256 on a channel of its own (the file is the login user's: no sudo needed), still during
    apt; a command moves it."""

    def __init__(self, src: str, temp: str, sha256: str):
        self.src, self.temp, self.sha256 = src, temp, sha256
        self._greenlet: gevent.Greenlet | None = None

    def start(self, state, host) -> bool:
        self._greenlet = gevent.spawn(self._send, host)
        return True

    def _send(self, host) -> str | None:
        """None when sent and checked, else what went wrong."""
        if not host.put_file(self.src, self.temp):
            return f"could not upload {self.src} to {self.temp}"
        ok, output = host.run_shell_command(StringCommand(render("check-archive.sh.j2", archive=self.temp,
                                                                 sha256=self.sha256)))
        return None if ok else output.stderr or f"{self.temp} does not match SHA-256 {self.sha256}"

    def finish(self, state, host) -> bool:
        assert self._greenlet is not None
        error = self._greenlet.get()
        if error:
            host.log(error, log_func=logger.error)
            return False
        return True


@deploy("Install Docker")
def install_docker(settings: Settings, state: dict, preload: Preload | None = None,
                   daemon_json: DaemonJsonWithInstall | None = None) -> bool:
    """`state` is the host's DockerHostState fact (read before anything was installed). Returns whether
    `preload` went with the install (only a host that installs something takes it). `daemon_json` is
    given only where the engine is installed (installs_engine())."""
    wanted = packages_for(settings, state["os"], state["apparmor"])
    missing = missing_packages(settings, state, wanted)
    # Only missing packages trigger an apt update: a converged host costs nothing here.
    if missing:
        if settings.docker_install_source == "docker-ce":
            if state["packages"].get("docker.io") and not state["packages"].get("docker-ce"):
                raise DeployError(
                    f"host {host.name!r} runs Debian's docker.io; docker_install_source='docker-ce' would replace "
                    "the engine under its running containers, so regdeploy refuses and nothing was changed. "
                    "To switch, stop what runs there and `apt-get remove docker.io` yourself (images and "
                    "volumes in /var/lib/docker and /etc/docker/daemon.json stay), then run the deploy "
                    "again; or keep docker_install_source='distro'.")
            add_docker_ce_repository(settings)
        # One name on every host (pyinfra shows one name per operation); which packages, per host.
        host.log(f"Will install {', '.join(missing)}" + (f", then load {preload.what}" if preload else ""))
        install_and_start(name="Install Docker's packages and start Docker", packages=missing, preload=preload,
                          daemon_json=daemon_json)
        return bool(preload)

    if not (state["active"] and state["enabled"]):
        systemd.service(
            name="Start Docker and enable it at boot",
            service="docker",
            running=True,
            enabled=True,
        )
    else:
        host.noop(f"Docker ({', '.join(wanted) or 'installed by hand'}) runs and starts at boot")
    return False


def add_docker_ce_repository(settings: Settings) -> None:
    distro = host.get_fact(LinuxDistribution) or {}
    distro_id = str(distro.get("name") or "").lower()
    codename = (distro.get("release_meta") or {}).get("VERSION_CODENAME")
    if distro_id not in ("debian", "ubuntu") or not codename:
        raise DeployError(
            f"host {host.name!r}: docker_install_source='docker-ce' supports Debian and Ubuntu only "
            f"(found {distro.get('name')!r}); install Docker yourself and set docker_install_source='none'"
        )
    base = f"{settings.docker_ce_repo_url}/{distro_id}"
    # One script, not apt.key + apt.sources_file: the repository is added only once apt has verified
    # it with the key it publishes, so a refused one leaves nothing half-installed.
    server.shell(name=f"Add Docker's apt repository {base} ({codename} stable, key in {DOCKER_CE_KEYRING})",
                 commands=[render("docker-ce-repository.sh.j2", base=base, codename=codename,
                                  keyring=DOCKER_CE_KEYRING, source_file=DOCKER_CE_SOURCE)])

"""Install Docker (distro docker.io, Docker's apt repository, or nothing) and keep it running."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import server, systemd

from regdeploy.docker_packages import DaemonJsonWithInstall, Preload, missing_packages, packages_for
from regdeploy.operations import install_and_start
from regdeploy.rendering import render
from regdeploy.settings import Settings
from regdeploy.host_state import HostState

DOCKER_CE_KEYRING = "/etc/apt/keyrings/docker.gpg"
DOCKER_CE_SOURCE = "/etc/apt/sources.list.d/docker.sources"


@deploy("Install Docker")
def install_docker(settings: Settings, state: HostState, preload: Preload | None = None,
                   daemon_json: DaemonJsonWithInstall | None = None) -> bool:
    """`state` is the host's DockerHostState fact (read before anything was installed). Returns whether
    `preload` went with the install (only a host that installs something takes it). `daemon_json` is
    given only where the engine is installed (installs_engine())."""
    wanted = packages_for(settings, state.os, state.apparmor)
    missing = missing_packages(settings, state, wanted)
    # Only missing packages trigger an apt update: a converged host costs nothing here.
    if missing:
        if settings.docker_install_source == "docker-ce":
            if state.packages.get("docker.io") and not state.packages.get("docker-ce"):
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

    if not (state.active and state.enabled):
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

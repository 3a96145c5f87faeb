"""Install Docker (distro docker.io, Docker's apt repository, or nothing) and keep it running."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, systemd

from regdeploy.settings import Settings

PACKAGES = {
    "distro": ["docker.io"],
    "docker-ce": ["docker-ce", "docker-ce-cli", "containerd.io"],
    "none": [],
}
DOCKER_CE_KEYRING = "/etc/apt/keyrings/docker.gpg"


# The registry server's readiness check and catalog fact use curl (with docker_install_source
# "none", nothing is installed: the server must have curl already).
SERVER_PACKAGES = ["curl"]


def packages_for(settings: Settings) -> list[str]:
    packages = PACKAGES[settings.docker_install_source]
    return packages + SERVER_PACKAGES if packages and settings.is_server else packages


def missing_packages(settings: Settings, state: dict) -> list[str]:
    """The packages this host still needs (from the DockerHostState fact read before any change)."""
    return [name for name in packages_for(settings) if not state["packages"].get(name)]


@deploy("Install Docker")
def install_docker(settings: Settings, state: dict) -> None:
    """`state` is the host's DockerHostState fact (read before anything was installed)."""
    missing = missing_packages(settings, state)
    # Only missing packages trigger an apt update: a converged host costs nothing here.
    if missing:
        if settings.docker_install_source == "docker-ce":
            add_docker_ce_repository(settings)
        apt.packages(name=f"Install {', '.join(missing)}", packages=packages_for(settings), update=True)

    if missing or not (state["active"] and state["enabled"]):
        systemd.service(
            name="Start Docker and enable it at boot",
            service="docker",
            running=True,
            enabled=True,
        )
    else:
        host.noop(f"Docker ({', '.join(packages_for(settings)) or 'installed by hand'}) runs and starts at boot")


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
    apt.packages(name="Install what fetching Docker's apt key needs",
                 packages=["ca-certificates", "wget", "gnupg"], update=True)
    apt.key(name="Add Docker's apt signing key to /etc/apt/keyrings",
            src=f"{base}/gpg", dest=DOCKER_CE_KEYRING)
    apt.sources_file(
        name="Add Docker's apt repository (deb822, signed-by)",
        filename="docker",
        types=["deb"],
        uris=[base],
        suites=[codename],
        components=["stable"],
        signed_by=DOCKER_CE_KEYRING,
    )

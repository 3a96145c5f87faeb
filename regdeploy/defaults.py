"""Every inventory variable regdeploy reads, with its default and meaning: the one place defaults live.

The README's variables table is generated from this list (`python -m regdeploy.defaults`) and a
unit test fails when the two differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Variable:
    name: str
    default: Any
    help: str


VARIABLES: tuple[Variable, ...] = (
    Variable("registry_host", "",
             "Name clients use to reach the registry. Empty: the server's inventory name."),
    Variable("registry_port", 5000, "Port the registry is published on (host side)."),
    Variable("registry_image", "registry:2", "Registry image reference (Docker's naming rules)."),
    Variable("registry_image_archive", "",
             "Air-gapped sites: a `docker save` tarball on the controller, loaded instead of pulled."),
    Variable("registry_image_archive_sha256", "",
             "Expected SHA-256 of `registry_image_archive`, checked on the controller and the server."),
    Variable("registry_container_name", "registry", "Name of the registry container."),
    Variable("registry_data_dir", "/var/lib/registry", "Host directory holding the registry's storage."),
    Variable("registry_config_dir", "/etc/regdeploy",
             "Host directory for the rendered registry config.yml (mounted read-only)."),
    Variable("registry_restart_policy", "always",
             "Restart policy of the registry container: no, always, unless-stopped, on-failure[:N]."),
    Variable("registry_ready_timeout", 60,
             "Seconds to wait for `GET /v2/` after the registry (re)starts before failing."),
    Variable("registry_mirrors", [], "Optional `registry-mirrors` merged into every client's daemon.json."),
    Variable("registry_seed_images", [],
             "Images the registry must hold after a deploy: pulled on the server, pushed to it."),
    Variable("registry_seed_archives", [],
             "`docker save` tarballs on the controller whose images are pushed (air-gapped seeding)."),
    Variable("docker_install_source", "distro",
             "How Docker is installed: distro (Debian/Ubuntu docker.io), docker-ce (Docker's apt "
             "repository), none (already installed)."),
    Variable("docker_ce_repo_url", "https://download.docker.com/linux",
             "Base URL of Docker's apt repository (set it to a mirror); `/debian` or `/ubuntu` is appended."),
    Variable("docker_daemon_json", "/etc/docker/daemon.json", "Path of the Docker daemon configuration."),
    Variable("deploy_lock_timeout", 600,
             "Seconds a deploy waits for another deploy (or `regdeploy backup`) on the same host to end "
             "before it stops, naming the holder."),
)

DEFAULTS: dict[str, Any] = {v.name: v.default for v in VARIABLES}


def markdown_table() -> str:
    def show(value: Any) -> str:
        if value == "":
            return "(empty)"
        return f"`{value}`" if not isinstance(value, list) else f"`{value!r}`"

    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{v.name}` | {show(v.default)} | {v.help} |" for v in VARIABLES]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())

"""Run the registry container: image (pulled or loaded from an archive), config, storage, readiness.

pyinfra's docker.container never recreates a container whose spec changed (its diff is a stub in
3.10), so the full spec is hashed into a label and the container is recreated exactly when the
hash, the image behind the tag, or the config file on disk differs.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.docker import DockerContainer, DockerImage
from pyinfra.operations import docker, files, server

from regdeploy.facts import RegistryFiles
from regdeploy.rendering import render
from regdeploy.settings import Settings, archive_sha256

SPEC_LABEL = "regdeploy.spec-sha256"
CONTAINER_PORT = 5000  # the registry's own listen address inside the container (config.yml)
ARCHIVE_CACHE_DIR = "/var/cache/regdeploy"


@deploy("Run the Docker registry")
def run_registry(settings: Settings) -> None:
    config_text = render("registry-config.yml.j2", data_dir=settings.registry_data_dir)
    config_path = posixpath.join(settings.registry_config_dir, "config.yml")
    # pyinfra 3 gathers a fact anew on every call: the server's state is read in three facts
    # (files, image, container) and reused; pyinfra's operations run only where something differs.
    on_disk = host.get_fact(RegistryFiles, config_path=config_path, data_dir=settings.registry_data_dir)
    if not on_disk["data_dir"]:
        files.directory(name=f"Create the registry storage directory {settings.registry_data_dir}",
                        path=settings.registry_data_dir, mode="755")
    config_sha256 = hashlib.sha256(config_text.encode()).hexdigest()
    config_rewritten = on_disk["config_sha256"] != config_sha256
    if config_rewritten:
        files.put(name=f"Write the registry configuration {config_path}",
                  src=StringIO(config_text), dest=config_path, mode="644")

    ports = [f"{settings.registry_port}:{CONTAINER_PORT}"]
    volumes = [f"{settings.registry_data_dir}:/var/lib/registry",
               f"{config_path}:/etc/docker/registry/config.yml:ro"]
    spec_hash = container_spec_hash(settings, ports, volumes, config_sha256)

    image = host.get_fact(DockerImage, object_id=settings.registry_image)
    existing = host.get_fact(DockerContainer, object_id=settings.registry_container_name)
    current = existing[0] if existing else None
    spec_changed = bool(current) and (current.get("Config", {}).get("Labels") or {}).get(SPEC_LABEL) != spec_hash
    image_moved = bool(current) and bool(image) and current.get("Image") != image[0].get("Id")

    if settings.registry_image_archive:
        # A changed spec may mean a new archive: upload (a no-op if identical) and load if it differs.
        if not image or spec_changed:
            _load_image_archive(settings, image_present=bool(image))
    elif not image:
        # Pull only when absent: an explicit tag is the operator's pin (no re-pull on every run).
        server.shell(name=f"Pull {settings.registry_image}",
                     commands=[f"docker pull -q {settings.registry_image}"])

    # A rewritten config.yml (edited by hand since) reaches the registry only through a new container.
    recreate = spec_changed or image_moved or (bool(current) and config_rewritten)
    if current and not recreate and current.get("State", {}).get("Running"):
        return  # converged: no operation, no further facts

    container = docker.container(
        name=f"Run the registry container {settings.registry_container_name!r}"
             + (" (recreate: its spec, image or config changed)" if recreate else ""),
        container=settings.registry_container_name,
        image=settings.registry_image,
        ports=ports,
        volumes=volumes,
        restart_policy=settings.registry_restart_policy,
        labels=[f"{SPEC_LABEL}={spec_hash}"],
        force=recreate,
        # Air-gapped: a missing image must fail loudly, never trigger a pull.
        extra_args=["--pull", "never"] if settings.registry_image_archive else None,
    )
    server.shell(
        name=f"Wait until the registry answers GET /v2/ on port {settings.registry_port}",
        commands=[render("wait-for-registry.sh.j2", port=settings.registry_port,
                         timeout=settings.registry_ready_timeout,
                         container=settings.registry_container_name)],
        _if=container.did_change,
    )


def container_spec_hash(settings: Settings, ports: list[str], volumes: list[str], config_sha256: str) -> str:
    """Hash of everything that defines the registry container; a different hash means recreate."""
    spec = {
        "image": settings.registry_image,
        "archive_sha256": image_archive_sha256(settings),
        "ports": ports,
        "volumes": volumes,
        "config_sha256": config_sha256,
        "restart_policy": settings.registry_restart_policy,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def image_archive_sha256(settings: Settings) -> str:
    """The air-gapped image archive's SHA-256 (as given, else computed); empty when pulling."""
    if not settings.registry_image_archive:
        return ""
    return settings.registry_image_archive_sha256 or archive_sha256(settings.registry_image_archive)


def _load_image_archive(settings: Settings, image_present: bool) -> None:
    remote = posixpath.join(ARCHIVE_CACHE_DIR, posixpath.basename(settings.registry_image_archive))
    sha256 = image_archive_sha256(settings)
    upload = files.put(name=f"Upload the registry image archive to {remote}",
                       src=settings.registry_image_archive, dest=remote, mode="600")
    server.shell(
        name=f"Load {settings.registry_image} from {remote} (no pull)",
        commands=[render("load-image-archive.sh.j2", archive=remote, sha256=sha256,
                         image=settings.registry_image)],
        _if=lambda: not image_present or upload.did_change(),
    )

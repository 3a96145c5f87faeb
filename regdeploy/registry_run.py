"""What the server's registry operation does, decided from the settings and what the host's fact
read: its steps (RegistrySteps), the container it wants (DesiredContainer and its spec hash), the
image archive's upload, and the run-registry script that carries out registry_plan's plan. No pyinfra."""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass

from . import registry_files, registry_plan
from .docker_packages import Preload
from .load_balancer import LB_BACKEND, replica_drain, server_name
from .registry_plan import CONFIG_TARGET, CONTAINER_PORT, DEBUG_PORT, SPEC_LABEL, DesiredContainer, ServerState
from .rendering import render
from .settings import Settings, archive_sha256, cache_settings


ARCHIVE_CACHE_DIR = "/var/cache/regdeploy"


@dataclass(frozen=True)
class RegistrySteps:
    """What the server's one registry operation does, in this order (plan_steps decides)."""
    create_dir: bool = False
    write_config: bool = False
    # Upload the image archive (nothing is sent when the server's copy is identical), then load it if
    # it was sent or the image is absent.
    load_archive: bool = False
    pull: bool = False
    run: bool = False  # the run-registry script: the plan's action

    def __bool__(self) -> bool:
        return any((self.create_dir, self.write_config, self.load_archive, self.pull, self.run))


def plan_steps(observed: ServerState, action: str, config_sha256: str, archive: bool,
               preloaded: bool = False) -> RegistrySteps:
    """The steps for `action` (registry_plan's) on a server whose registry side is `observed`; `archive`:
    the image comes from an archive (else a pull), `preloaded`: it was loaded with the Docker install."""
    # A new container may mean a new archive; a pull happens only when the image is absent: an
    # explicit tag is the operator's pin (no re-pull on every run).
    needs_image = not observed.image_id or action in ("recreate", "adopt", "create")
    return RegistrySteps(
        create_dir=observed.data_dir == "absent",
        write_config=observed.config_sha256 != config_sha256,
        load_archive=archive and needs_image and not preloaded,
        pull=not archive and not observed.image_id,
        run=action != "none",
    )


def steps_summary(steps: RegistrySteps, settings: Settings, archive: Preload | None) -> str:
    """The operation's name when the container itself stays as it is."""
    parts = []
    if steps.create_dir:
        parts.append(f"Create the registry storage directory {settings.registry_data_dir}")
    if steps.write_config:
        parts.append(f"Write the registry configuration {settings.registry_config_path}")
    if steps.load_archive and archive:
        parts.append(f"Load {archive.what} (no pull)")
    if steps.pull:
        parts.append(f"Pull {settings.registry_image}")
    return "; ".join(parts)


def image_preload(settings: Settings, observed: ServerState | None) -> Preload | None:
    """The image archive for a server whose Docker is being installed to take with the install: its upload
    then runs beside the other hosts' installs. None when the image is pulled or already there."""
    return archive_upload(settings) if settings.registry_image_archive and not (observed and observed.image_id) \
        else None


def archive_upload(settings: Settings) -> Preload | None:
    """The image archive's upload to the server and its load (never a pull); None without an archive."""
    if not settings.registry_image_archive:
        return None
    remote = posixpath.join(ARCHIVE_CACHE_DIR, posixpath.basename(settings.registry_image_archive))
    sha256 = image_archive_sha256(settings)
    # files.put skips a copy whose SHA-1 matches: `then` checks the pinned SHA-256 of what is there.
    load = {check: render("load-image-archive.sh.j2", archive=remote, sha256=sha256, image=settings.registry_image,
                          check=check) for check in (True, False)}
    return Preload(src=settings.registry_image_archive, dest=remote, sha256=sha256, then=load[True], load=load[False],
                   what=f"{settings.registry_image} from {remote}")


def run_script(settings: Settings, plan: registry_plan.RegistryPlan, desired: DesiredContainer,
               aside: str, notice: str | None = None) -> str:
    """The script that carries out `plan` on the server (templates/actions/run-registry.sh.j2)."""
    return render("run-registry.sh.j2", plan=plan, name=desired.name, image=settings.registry_image, aside=aside,
                  notice=notice, api=registry_files.loopback_api(settings), extra_mounts=desired.extra_mounts,
                  port=desired.host_port, container_port=CONTAINER_PORT, debug_binding=desired.debug_binding,
                  debug_port=DEBUG_PORT,
                  data_dir=desired.data_dir, config_path=desired.config_path, config_target=desired.config_target,
                  command=desired.command,
                  storage_target=registry_plan.STORAGE_TARGET, restart_policy=desired.restart_policy,
                  spec_label=f"{SPEC_LABEL}={desired.spec_hash}", pull_never=bool(settings.registry_image_archive),
                  timeout=settings.registry_ready_timeout, marker=registry_plan.MIGRATION_MARKER,
                  aside_suffix=registry_plan.ASIDE_SUFFIX,
                  lb_stats_urls=() if settings.serves_cache else settings.lb_stats_urls,
                  lb_ipvs=None if settings.serves_cache else replica_drain(settings, CONTAINER_PORT),
                  drain_seconds=registry_files.DRAIN_SECONDS,
                  lb_server=server_name(settings.host_name), lb_backend=LB_BACKEND,
                  bucket=registry_files.bucket_url(settings) if plan.to_bucket else "",
                  s3_region=settings.registry_s3_region, moved_marker=registry_plan.MOVED_MARKER)


def registry_facts(settings: Settings) -> tuple:
    """What the server's DockerHostState fact reads about the registry (its `registry` argument)."""
    return (settings.registry_config_path, settings.registry_data_dir, settings.registry_image,
            settings.registry_container_name, settings.registry_port)


def desired_container(settings: Settings, config_path: str, config_sha256: str,
                      cert_sha256: str = "", signing_sha256: str = "") -> DesiredContainer:
    # The hash is over these `docker run` strings, as since the first version: a registry deployed by
    # an earlier regdeploy keeps its label, so upgrading regdeploy recreates nothing.
    debug = registry_files.debug_binding(settings)
    ports = [f"{settings.registry_port}:{CONTAINER_PORT}", f"{debug}:{DEBUG_PORT}"]
    extra = tuple(registry_files.extra_mounts(settings))
    volumes = [f"{settings.registry_data_dir}:{registry_plan.STORAGE_TARGET}", f"{config_path}:{CONFIG_TARGET}:ro",
               *(f"{source}:{target}:ro" for source, target in extra)]
    return DesiredContainer(
        name=settings.registry_container_name, host_port=settings.registry_port,
        data_dir=settings.registry_data_dir, config_path=config_path, config_target=CONFIG_TARGET,
        restart_policy=settings.registry_restart_policy, extra_mounts=extra, command=(CONFIG_TARGET,),
        debug_binding=debug,
        spec_hash=container_spec_hash(settings, ports, volumes, config_sha256, cert_sha256, signing_sha256),
    )


def container_spec_hash(settings: Settings, ports: list[str], volumes: list[str], config_sha256: str,
                        cert_sha256: str = "", signing_sha256: str = "") -> str:
    """Hash of everything that defines the registry container; a different hash means recreate.
    The registry reads its certificate, and the token signing certificate it trusts (its
    `rootcertbundle`, `signing_sha256`), only when it starts: a new one means a new container (the
    htpasswd file it re-reads by itself, so it is not here)."""
    spec = {
        "image": settings.registry_image,
        "archive_sha256": image_archive_sha256(settings),
        "ports": ports,
        "volumes": volumes,
        "config_sha256": config_sha256,
        "restart_policy": settings.registry_restart_policy,
    }
    if cert_sha256:
        spec["tls_cert_sha256"] = cert_sha256
    if signing_sha256:
        spec["token_signing_sha256"] = signing_sha256
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def image_archive_sha256(settings: Settings) -> str:
    """The air-gapped image archive's SHA-256 (as given, else computed); empty when pulling."""
    if not settings.registry_image_archive:
        return ""
    return settings.registry_image_archive_sha256 or archive_sha256(settings.registry_image_archive)


def cache_facts(settings: Settings) -> dict:
    """The server's DockerHostState arguments for the cache: what to read of it when it is
    configured, else which container an earlier cache may have left."""
    if settings.registry_proxy_remote_url:
        return {"cache": registry_facts(cache_settings(settings))}
    return {"cache_name": settings.registry_proxy_container_name}

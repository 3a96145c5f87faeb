"""Run the registry container: image (pulled or loaded from an archive), config, storage, readiness.

The server's state is read with the rest of the host (DockerHostState), the decision is the pure
`registry_plan.plan_registry`, and the container is (re)created by one script
(templates/run-registry.sh.j2) rather than pyinfra's docker.container: that operation never
recreates a container whose spec changed (its diff is a stub in 3.10), and adopting a registry
started by hand needs stop, copy, verify, swap and roll back in one ordered step.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shlex
import time
from dataclasses import dataclass

from pyinfra import host, logger
from pyinfra.api import QuoteString, StringCommand, deploy, operation
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import FileContents
from pyinfra.operations import files

from regdeploy import credentials, registry_files, registry_plan, security
from regdeploy.changes import text_diff
from regdeploy.registry_plan import (
    CONFIG_TARGET, CONTAINER_PORT, DEBUG_PORT, SPEC_LABEL, DesiredContainer, PlanError, ServerState,
)
from regdeploy.load_balancer import LB_BACKEND, server_name
from regdeploy.rendering import render
from regdeploy.settings import Settings, archive_sha256
from .docker_engine import Preload

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


@deploy("Run the Docker registry")
def run_registry(settings: Settings, observed: ServerState, preloaded: bool = False) -> None:
    """`observed` is the server's registry side, read by its DockerHostState fact (registry_facts());
    `preloaded`: the image archive was loaded with the Docker install (image_preload())."""
    config_text = registry_files.registry_config(settings)
    config_path = settings.registry_config_path
    config_sha256 = hashlib.sha256(config_text.encode()).hexdigest()
    tls = security.tls_material(settings)
    desired = desired_container(settings, config_path, config_sha256, tls.cert_sha256 if tls else "")

    try:
        plan = registry_plan.plan_storage(settings.registry_storage, settings.registry_data_dir, observed,
                                          registry_plan.plan_registry(desired, observed, config_sha256))
    except PlanError as exc:
        raise DeployError(f"host {host.name!r}: {exc}") from None
    steps = plan_steps(observed, plan.action, config_sha256, bool(settings.registry_image_archive), preloaded)
    name = settings.registry_container_name
    if not steps.run:
        host.noop(f"registry container {name!r} runs and matches its spec")
    if not steps:
        return

    # A file that may hold a password or key: root only.
    secret = registry_files.holds_secrets(settings)
    private = settings.serves_cache or secret
    if steps.write_config:
        if secret:
            # It holds a password or key: neither read back nor shown.
            host.log(f"Will write {config_path} (it holds credentials: not shown)")
        else:
            # The content is read only when it differs (the fact gave its hash), to show the diff.
            on_host = host.get_fact(FileContents, path=config_path) if observed.config_sha256 else None
            host.log(f"Will {'modify' if on_host is not None else 'create'} {config_path}:")
            for line in text_diff("\n".join(on_host) + "\n" if on_host is not None else None, config_text,
                                  config_path):
                host.log(f"  {line}")
    archive = archive_upload(settings)
    aside = notice = None
    if steps.run:
        host.log(f"Will {plan.action} the registry container {name!r}" + (":" if plan.reasons or plan.migration else ""))
        for line in plan.reasons + ((plan.migration.describe(),) if plan.migration else ()):
            host.log(f"  {line}")
        aside = f"{name}{registry_plan.KEPT_SUFFIX}-{time.strftime('%Y%m%d%H%M%S')}" if plan.adopts \
            else name + registry_plan.ASIDE_SUFFIX
        notice = plan.notice(name, aside)
        if notice:
            # Said before the run (and by --dry), where every operator sees it: what is kept, and where.
            host.log(notice, log_func=logger.warning)
    # A copy into the bucket needs the S3 key: on the script's stdin, never in its text.
    s3 = registry_files.s3_config(settings) if steps.run and plan.to_bucket else None
    # One operation, so the server costs the fleet one step here, not one per file and command.
    # Several replicas are replaced one at a time (pyinfra's _serial): each script returns only once the
    # load balancer sends its replica requests again, so the others serve all along.
    start_registry(
        name=plan.summary(name) if steps.run else steps_summary(steps, settings, archive),
        data_dir=settings.registry_data_dir if steps.create_dir else "",
        config=(config_text, config_path, "600" if private else "644", secret) if steps.write_config else None,
        archive=archive if steps.load_archive else None, image_present=bool(observed.image_id),
        pull=f"docker pull -q {shlex.quote(settings.registry_image)}" if steps.pull else "",
        script=run_script(settings, plan, desired, aside, notice) if steps.run else "",
        script_stdin=credentials.curl_config(s3.access_key, s3.secret_key) if s3 else None,
        _serial=settings.several_replicas)


@operation()
def start_registry(data_dir: str = "", config: tuple[str, str, str, bool] | None = None,
                   archive: Preload | None = None, image_present: bool = True, pull: str = "", script: str = "",
                   script_stdin: str | None = None):
    """The server's registry steps (RegistrySteps), in order: `data_dir` to create, `config` (text, path,
    mode, secret?) to write, `archive` to upload and load, `pull`, and the run-registry `script` (with
    `script_stdin`, a secret for it)."""
    mkdir = StringCommand("mkdir", "-p", "-m", "755", QuoteString(data_dir)) if data_dir else None
    if config:
        # One command, the content already known to differ (the fact's hash): staged with its mode from
        # its creation and renamed into place; one holding a secret travels on stdin. A new storage
        # directory is made by the same command: one round trip fewer on a fresh server.
        text, path, mode, secret = config
        put = render("put-file.sh.j2", path=path, mode=mode, content=None if secret else text).strip()
        yield StringCommand(*((mkdir, "||", "exit", "1", "\n") if mkdir else ()), put,
                            _stdin=text if secret else None)
    elif mkdir:
        yield mkdir
    if archive:
        sent = list(files.put._inner(src=archive.src, dest=archive.dest, mode="600"))
        yield from sent
        if sent or not image_present:
            yield archive.then
    if pull:
        yield StringCommand(pull)
    if script:
        yield StringCommand(script.strip(), _stdin=script_stdin)


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
    """The script that carries out `plan` on the server (templates/run-registry.sh.j2)."""
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
                  lb_stats_url="" if settings.serves_cache else settings.lb_stats_url,
                  lb_server=server_name(settings.host_name), lb_backend=LB_BACKEND,
                  bucket=registry_files.bucket_url(settings) if plan.to_bucket else "",
                  s3_region=settings.registry_s3_region, moved_marker=registry_plan.MOVED_MARKER)


def registry_facts(settings: Settings) -> tuple:
    """What the server's DockerHostState fact reads about the registry (its `registry` argument)."""
    return (settings.registry_config_path, settings.registry_data_dir, settings.registry_image,
            settings.registry_container_name, settings.registry_port)


def desired_container(settings: Settings, config_path: str, config_sha256: str,
                      cert_sha256: str = "") -> DesiredContainer:
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
        spec_hash=container_spec_hash(settings, ports, volumes, config_sha256, cert_sha256),
    )


def container_spec_hash(settings: Settings, ports: list[str], volumes: list[str], config_sha256: str,
                        cert_sha256: str = "") -> str:
    """Hash of everything that defines the registry container; a different hash means recreate.
    The registry reads its certificate only when it starts: a new one means a new container (the
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
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def image_archive_sha256(settings: Settings) -> str:
    """The air-gapped image archive's SHA-256 (as given, else computed); empty when pulling."""
    if not settings.registry_image_archive:
        return ""
    return settings.registry_image_archive_sha256 or archive_sha256(settings.registry_image_archive)

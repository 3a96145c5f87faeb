"""Run the registry container: image (pulled or loaded from an archive), config, storage, readiness.

The server's state is read with the rest of the host (DockerHostState), the decision is the pure
`registry_plan.plan_registry`, and the container is (re)created by one script
(templates/actions/run-registry.sh.j2) rather than pyinfra's docker.container: that operation never
recreates a container whose spec changed (its diff is a stub in 3.10), and adopting a registry
started by hand needs stop, copy, verify, swap and roll back in one ordered step.
"""

from __future__ import annotations

import hashlib
import shlex
import time

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import FileContents

from regdeploy import credentials, registry_files, registry_plan, security
from regdeploy.changes import text_diff
from regdeploy.operations import start_registry
from regdeploy.registry_plan import PlanError, ServerState
from regdeploy.registry_run import archive_upload, desired_container, plan_steps, run_script, steps_summary
from regdeploy.settings import Settings


@deploy("Run the Docker registry")
def run_registry(settings: Settings, observed: ServerState, preloaded: bool = False) -> None:
    """`observed` is the server's registry side, read by its DockerHostState fact (registry_facts());
    `preloaded`: the image archive was loaded with the Docker install (image_preload())."""
    config_text = registry_files.registry_config(settings)
    config_path = settings.registry_config_path
    config_sha256 = hashlib.sha256(config_text.encode()).hexdigest()
    tls = security.tls_material(settings)
    signing = security.signing_material(settings)
    desired = desired_container(settings, config_path, config_sha256, tls.cert_sha256 if tls else "",
                                hashlib.sha256(signing.cert_pem.encode()).hexdigest() if signing else "")

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



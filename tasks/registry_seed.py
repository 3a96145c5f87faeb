"""Make the registry hold `registry_seed_images` and the images in `registry_seed_archives`.

Idempotent through the registry itself: an image whose target tag the registry already lists
(RegistryCatalog fact, read over loopback on the server) is skipped, so a re-run changes nothing.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from dataclasses import astuple

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import files, server

from regdeploy import reference, registry_files
from regdeploy.facts import RegistryCatalog
from regdeploy.rendering import render
from regdeploy.settings import Settings

SEED_CACHE_DIR = "/var/cache/regdeploy/seed"


@deploy("Seed the registry")
def seed_registry(settings: Settings) -> None:
    if not (settings.registry_seed_images or settings.registry_seed_archives):
        return
    # None before the registry first runs: then everything is pushed.
    catalog = host.get_fact(RegistryCatalog, port=settings.registry_port,
                            api=astuple(registry_files.loopback_api(settings))) or {}

    def missing(sources: list[str]) -> list[tuple[str, str]]:
        pairs = []
        for source in sources:
            parsed = reference.parse(source)
            target = parsed.in_registry(settings.registry_address)
            if target.tag not in catalog.get(target.path, []):
                pairs.append((parsed.familiar, target.familiar))
        return pairs

    images = missing(list(settings.registry_seed_images))
    archives = [(archive, missing(archive_repo_tags(archive))) for archive in settings.registry_seed_archives]
    if not images and not any(pairs for _, pairs in archives):
        host.noop("the registry holds every seed image")
        return
    for source, target in images:
        server.shell(name=f"Seed {source} into the registry as {target}",
                     commands=[render("push-images.sh.j2", archive=None, images=[(source, target)])])

    for archive, pairs in archives:
        if not pairs:
            continue
        remote = posixpath.join(SEED_CACHE_DIR, posixpath.basename(archive))
        files.put(name=f"Upload the seed archive {posixpath.basename(archive)}", src=archive, dest=remote,
                  mode="600")
        server.shell(name=f"Seed {', '.join(t for _, t in pairs)} from {posixpath.basename(archive)}",
                     commands=[render("push-images.sh.j2", archive=remote, images=pairs)])


def archive_repo_tags(path: str) -> list[str]:
    """The image names a `docker save` archive holds (manifest.json's RepoTags)."""
    try:
        with tarfile.open(path) as archive:
            manifest = json.load(archive.extractfile("manifest.json"))
    except (tarfile.TarError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise DeployError(f"registry_seed_archives: {path} is not a `docker save` archive ({exc})") from None
    tags = [tag for entry in manifest for tag in entry.get("RepoTags") or []]
    if not tags:
        raise DeployError(f"registry_seed_archives: {path} holds no tagged image (save it by name:tag)")
    return tags

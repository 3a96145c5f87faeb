"""`regdeploy`: list what the registry holds, copy images into it, check image references."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from .inventory import Fleet, load_fleet, write_ssh_config  # first: it sets up gevent (see there)
from . import __version__, deploy_lock, reference, registry_files, security
from .credentials import CredentialError
from .registry_api import RegistryClient, RegistryError, base_url
from .settings import ConfigError


class Context:
    def __init__(self, inventory: str | None, registry: str | None, tls: bool, ca: str | None,
                 username: str | None, password: str | None, page_size: int):
        self.inventory, self.registry = inventory, registry
        self.tls, self.ca = tls, ca
        self.auth = (username, password or "") if username else None
        self.page_size = page_size
        self._fleet: Fleet | None = None

    @property
    def fleet(self) -> Fleet:
        if self._fleet is None:
            if not self.inventory:
                raise click.UsageError("this command needs --inventory (or $REGDEPLOY_INVENTORY)")
            try:
                self._fleet = load_fleet(self.inventory)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._fleet

    def client(self) -> RegistryClient:
        """A client for the registry. With --inventory, TLS, the CA and the credentials come from the
        same places as the deploy's (the generated CA or registry_tls_ca; the login user's password
        from the environment or registry_password_file); options given here win."""
        tls, ca, auth = self.tls, self.ca, self.auth
        if self.registry:
            address = self.registry
        elif self.inventory:
            address = self.fleet.registry_api_address
            settings = self.fleet.server.settings
            tls = tls or settings.registry_tls
            ca = ca or security.ca_path(settings)
            if auth is None and settings.registry_auth:
                try:
                    auth = security.login(settings)
                except CredentialError as exc:
                    raise click.ClickException(str(exc)) from None
        else:
            raise click.UsageError("say which registry: --registry HOST:PORT or --inventory PATH")
        return RegistryClient(base_url(address, tls), auth=auth, verify=ca or True)


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


@click.group()
@click.option("--inventory", "-i", envvar="REGDEPLOY_INVENTORY", type=click.Path(exists=True, dir_okay=False),
              help="pyinfra inventory: the registry is its registry_servers host.")
@click.option("--registry", "-r", envvar="REGDEPLOY_REGISTRY", metavar="HOST:PORT",
              help="Registry address (overrides the inventory's); http:// unless --tls or https://.")
@click.option("--tls", is_flag=True, help="Talk HTTPS to the registry.")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False), help="CA bundle for --tls.")
@click.option("--username", envvar="REGDEPLOY_USERNAME")
@click.option("--password", envvar="REGDEPLOY_PASSWORD")
@click.option("--page-size", default=100, show_default=True, type=click.IntRange(1, 1000),
              help="Entries asked for per API page (the listing follows every page).")
@click.version_option(__version__, prog_name="regdeploy", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx, inventory, registry, tls, ca, username, password, page_size):
    """Work with the registry regdeploy deployed."""
    ctx.obj = Context(inventory, registry, tls, ca, username, password, page_size)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--tags/--no-tags", default=True, show_default=True, help="Also list each repository's tags.")
@click.pass_obj
def catalog(ctx: Context, as_json: bool, tags: bool) -> None:
    """List every repository (and its tags) in the registry."""
    client = ctx.client()
    try:
        repositories = client.catalog(page_size=ctx.page_size)
        listing = {name: (client.tags(name, page_size=ctx.page_size) if tags else None)
                   for name in repositories}
    except RegistryError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps([{"repository": name, "tags": listing[name]} if tags else {"repository": name}
                               for name in repositories], indent=2))
        return
    width = max([len("REPOSITORY")] + [len(name) for name in repositories])
    click.echo(f"{'REPOSITORY':{width}}  TAGS" if tags else "REPOSITORY")
    for name in repositories:
        click.echo(f"{name:{width}}  {' '.join(listing[name] or [])}" if tags else name)
    click.echo(f"({len(repositories)} {'repository' if len(repositories) == 1 else 'repositories'})", err=True)


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def tags(ctx: Context, name: str, as_json: bool) -> None:
    """List the tags of repository NAME."""
    try:
        found = ctx.client().tags(name, page_size=ctx.page_size)
    except RegistryError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({"repository": name, "tags": found}, indent=2))
    else:
        for tag in found:
            click.echo(tag)


@main.command("check-ref")
@click.argument("references", nargs=-1, required=True)
def check_ref(references: tuple[str, ...]) -> None:
    """Validate image references by Docker's rules and print their normalized form."""
    bad = 0
    for ref in references:
        try:
            parsed = reference.parse(ref)
        except reference.ReferenceError as exc:
            click.echo(f"invalid  {ref}: {exc}")
            bad += 1
            continue
        click.echo(f"valid    {ref} -> {parsed.normalized}")
    sys.exit(1 if bad else 0)


_DIGEST_RE = re.compile(r"digest: (sha256:[0-9a-f]{64})")


@main.command()
@click.argument("source")
@click.argument("target", required=False)
@click.option("--on", "on_host", help="Inventory host that does the copy (default: the registry server).")
@click.pass_obj
def copy(ctx: Context, source: str, target: str | None, on_host: str | None) -> None:
    """Copy image SOURCE into the registry: pull, tag, push, remove the local copies.

    TARGET is the name inside the registry (default: SOURCE's path and tag, e.g. busybox:1.36 ->
    <registry>/busybox:1.36). The copy runs with Docker on an inventory host, over SSH.
    """
    fleet = ctx.fleet
    try:
        src = reference.parse(source)
        dest = reference.parse(f"{fleet.registry_address}/{target}") if target else src.in_registry(fleet.registry_address)
    except reference.ReferenceError as exc:
        raise click.BadParameter(str(exc)) from None
    names = {h.name: h for h in fleet.hosts}
    worker = names.get(on_host or fleet.server.name)
    if worker is None:
        raise click.BadParameter(f"{on_host!r} is not in the inventory ({', '.join(names)})", param_hint="--on")
    dest_name = dest.familiar

    script = (
        "set -e; "
        f"if docker image inspect {src.familiar} >/dev/null 2>&1; then pulled=0; "
        f"else docker pull -q {src.familiar} >/dev/null; pulled=1; fi; "
        f"docker tag {src.familiar} {dest_name}; "
        f"docker push {dest_name}; "
        f"docker image rm {dest_name} >/dev/null; "
        f"if [ $pulled = 1 ]; then docker image rm {src.familiar} >/dev/null; fi"
    )
    with tempfile.TemporaryDirectory() as tmp:
        ssh_config = write_ssh_config(fleet, Path(tmp) / "ssh_config")
        click.echo(f"copying {src.familiar} -> {dest_name} on {worker.name}", err=True)
        result = subprocess.run(["ssh", "-F", str(ssh_config), worker.name, script],
                                capture_output=True, text=True)
    if result.returncode != 0:
        raise click.ClickException(f"copy failed on {worker.name}: {(result.stderr or result.stdout).strip()}")
    match = _DIGEST_RE.search(result.stdout)
    digest = match.group(1) if match else None
    click.echo(json.dumps({"source": src.familiar, "target": dest_name, "digest": digest, "host": worker.name}))


def _require_disk_storage(ctx: Context, what: str) -> None:
    """backup, restore and gc copy or collect registry_data_dir: on S3 a backup would be an empty
    archive, and a collection on one replica would delete layers the others are being pushed."""
    storage = ctx.fleet.server.settings.registry_storage
    if storage != "filesystem":
        raise click.ClickException(
            f"regdeploy {what} works on a registry stored on its server's disk; this one is stored in S3 "
            f"(registry_storage={storage}): use the store's own tools (bucket versioning, snapshots, "
            "replication). Nothing was done")


def _run_on_server(ctx: Context, what: str, template: str, stdin, stdout, **extra) -> int:
    """Render a templates/ script for the inventory's registry server and run it there over SSH;
    its stderr (messages) goes to ours."""
    fleet = ctx.fleet
    _require_disk_storage(ctx, what)
    script = registry_files.server_script(fleet.server.settings, template, deploy_lock.holder(f"regdeploy {what}"),
                                          **extra)
    with tempfile.TemporaryDirectory() as tmp:
        ssh_config = write_ssh_config(fleet, Path(tmp) / "ssh_config")
        # A connection of its own: the host's deploy lock belongs to the SSH connection, and a shared
        # (multiplexed) one would make every command through it the same holder.
        return subprocess.run(["ssh", "-F", str(ssh_config), "-o", "ControlMaster=no", "-o", "ControlPath=none",
                               fleet.server.name, "sh", "-c", shlex.quote(script)],
                              stdin=stdin, stdout=stdout).returncode


@main.command()
@click.argument("archive", type=click.Path(dir_okay=False, writable=True))
@click.pass_obj
def backup(ctx: Context, archive: str) -> None:
    """Write a consistent copy of the registry's storage to ARCHIVE (a tar).

    The registry is read-only meanwhile (pulls keep working, pushes are refused) and holds the
    host's deploy lock, so no deploy runs at the same time. The archive records every tag and its
    manifest digest; `regdeploy restore` checks them.
    """
    _require_disk_storage(ctx, "backup")
    partial = Path(archive + ".partial")
    with open(partial, "wb") as out:
        status = _run_on_server(ctx, "backup", "registry-backup.sh.j2", stdin=subprocess.DEVNULL, stdout=out)
    if status != 0:
        partial.unlink(missing_ok=True)
        raise click.ClickException(f"backup failed on {ctx.fleet.server.name} (see above); no archive was written")
    partial.replace(archive)
    click.echo(f"wrote {archive} ({Path(archive).stat().st_size} bytes) from {ctx.fleet.server.name}", err=True)


@main.command()
@click.option("--keep-untagged", is_flag=True,
              help="Free only blobs no manifest refers to; keep manifests that lost their tag.")
@click.pass_obj
def gc(ctx: Context, keep_untagged: bool) -> None:
    """Free the storage of images nothing refers to any more (registry garbage-collect).

    The registry is read-only meanwhile (pulls keep working, pushes are refused) and holds the
    host's deploy lock. Manifests that lost their tag go too (--delete-untagged), unless
    --keep-untagged or the registry stores an image index (multi-arch): the collector would take
    the index's platform manifests with them (distribution issue 3178). Every tag must be served
    with the same digest afterwards. Prints a JSON report (freed bytes, read-only seconds).
    """
    status = _run_on_server(ctx, "gc", "registry-gc.sh.j2", stdin=subprocess.DEVNULL, stdout=None,
                            delete_untagged=not keep_untagged)
    if status != 0:
        raise click.ClickException(f"garbage collection failed on {ctx.fleet.server.name} (see above)")


@main.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def restore(ctx: Context, archive: str) -> None:
    """Restore a `regdeploy backup` ARCHIVE onto the inventory's registry server.

    Deploy the server first; its storage directory must be empty (a restore never merges). The
    restored registry must then serve every tag with the digest the backup recorded.
    """
    with open(archive, "rb") as source:
        status = _run_on_server(ctx, "restore", "registry-restore.sh.j2", stdin=source, stdout=subprocess.DEVNULL)
    if status != 0:
        raise click.ClickException(f"restore failed on {ctx.fleet.server.name} (see above)")

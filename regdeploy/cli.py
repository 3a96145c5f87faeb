"""`regdeploy`: list what the registry holds, copy images into it, back it up, restore and collect it.

Exit codes (`regdeploy --help` lists them too):
"""

from __future__ import annotations

import contextlib
import enum
import io
import json
import re
import sys
import time
from pathlib import Path

import click

from .inventory import Fleet, InventoryHost, load_fleet  # first: it sets up gevent (see there)
from . import __version__, deploy_lock, reference, registry_files, remote, security
from .credentials import CredentialError
from .registry_api import RegistryClient, RegistryError, base_url
from .settings import ConfigError


class Exit(enum.IntEnum):
    """What the regdeploy command's exit status means; the same for every command."""

    OK = 0  # done
    FAILED = 1  # the work itself failed (on the host or at the registry): the message says where
    BAD_INPUT = 2  # a usage error, a bad option, image reference or inventory
    UNREACHABLE = 3  # a host or the registry did not answer (name, address, port, TLS)
    AUTH_REFUSED = 4  # a host refused the SSH login, or the registry the credentials
    NOT_FOUND = 5  # a repository, tag or inventory host that is not there
    REFUSED = 6  # refused for safety, nothing changed: data in the way, S3 storage, another run's lock


EXIT_HELP = {
    Exit.OK: "done",
    Exit.FAILED: "the work failed on the host or at the registry",
    Exit.BAD_INPUT: "bad input: usage, an option, an image reference, the inventory",
    Exit.UNREACHABLE: "a host or the registry could not be reached",
    Exit.AUTH_REFUSED: "a host refused the login, or the registry the credentials",
    Exit.NOT_FOUND: "a repository, tag or inventory host is not there",
    Exit.REFUSED: "refused for safety; nothing was changed",
}
__doc__ += "".join(f"\n- {code.value}: {text}" for code, text in EXIT_HELP.items()) + "\n"
# A server-side script exits with this when it refuses for safety.
SCRIPT_REFUSED = registry_files.REFUSED


class Failure(click.ClickException):
    """An error the command reports and exits with `code` for."""

    def __init__(self, message: str, code: Exit = Exit.FAILED):
        super().__init__(message)
        # click reads the code from the exception it catches; declared on ClickException as a class default.
        self.exit_code = int(code)  # type: ignore[misc]


def registry_failure(exc: RegistryError) -> Failure:
    """A registry's answer (or its silence) as the exit code that tells it apart."""
    if exc.status in (401, 403):
        code = Exit.AUTH_REFUSED
    elif exc.status == 404:
        code = Exit.NOT_FOUND
    elif exc.status is None:
        code = Exit.UNREACHABLE  # refused, timed out, no TLS handshake
    else:
        code = Exit.FAILED
    return Failure(str(exc), code)


class Progress:
    """`what: 12.3 MB` (or `what: 1/1 images`) on one line of stderr, rewritten as work goes on, only
    when stderr is a terminal; quiet otherwise (logs, CI, pipes)."""

    def __init__(self, what: str, stream=None, every: float = 0.2):
        self.what, self.every = what, every
        self.stream = stream or sys.stderr
        self.shown = False
        self._last = 0.0
        self.on = bool(getattr(self.stream, "isatty", lambda: False)())

    def bytes(self, count: int, final: bool = False) -> None:
        self._show(f"{count / 1e6:.1f} MB" if count >= 1e5 else f"{count} bytes", final)

    def items(self, done: int, total: int, unit: str = "images", final: bool = False) -> None:
        self._show(f"{done}/{total} {unit}", final)

    def _show(self, text: str, final: bool) -> None:
        now = time.monotonic()
        if not self.on or (not final and now - self._last < self.every):
            return
        self._last = now
        self.stream.write(f"\r{self.what}: {text}\033[K")
        self.shown = True
        self.stream.flush()

    def done(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


class Context:
    def __init__(self, inventory: str | None, registry: str | None, tls: bool, ca: str | None,
                 username: str | None, password: str | None, page_size: int):
        self.inventory, self.registry = inventory, registry
        self.tls, self.ca = tls, ca
        self.auth = (username, password or "") if username else None
        self.page_size = page_size
        self._fleet: Fleet | None = None

    @property
    def inventory_path(self) -> str:
        if not self.inventory:
            raise click.UsageError("this command needs --inventory (or $REGDEPLOY_INVENTORY)")
        return self.inventory

    @property
    def fleet(self) -> Fleet:
        if self._fleet is None:
            try:
                self._fleet = load_fleet(self.inventory_path)
            except ConfigError as exc:
                raise Failure(str(exc), Exit.BAD_INPUT) from None
        return self._fleet

    def run_on(self, h: InventoryHost, what: str, script: str, stdin=None, stdout=None, progress=None) -> int:
        """Run `script` on inventory host `h`, reached as the deploy reaches it (regdeploy.remote)."""
        try:
            with remote.connect(self.inventory_path, h.name) as connection:
                return connection.run(script, stdin=stdin, stdout=stdout, progress=progress)
        except remote.AuthRefused as exc:
            raise Failure(f"{what}: {exc}", Exit.AUTH_REFUSED) from None
        except remote.Unreachable as exc:
            raise Failure(f"{what}: {exc}", Exit.UNREACHABLE) from None

    def client(self) -> RegistryClient:
        """A client for the registry. With --inventory, TLS, the CA and the credentials come from the
        same places as the deploy's (the generated CA or registry_tls_ca; the login user's password
        from the environment or registry_password_file); options given here win."""
        tls, ca, auth = self.tls, self.ca, self.auth
        realm_hosts: dict[str, str] = {}
        if self.registry:
            address = self.registry
        elif self.inventory:
            address = self.fleet.registry_api_address
            settings = self.fleet.server.settings
            # The token realm names registry_host; the controller reaches it where it reaches the API.
            realm_hosts = {settings.registry_host: address.rsplit(":", 1)[0]}
            tls = tls or settings.registry_tls
            ca = ca or security.ca_path(settings)
            if auth is None and settings.registry_auth:
                try:
                    auth = security.login(settings)
                except CredentialError as exc:
                    raise Failure(str(exc), Exit.BAD_INPUT) from None
        else:
            raise click.UsageError("say which registry: --registry HOST:PORT or --inventory PATH")
        return RegistryClient(base_url(address, tls), auth=auth, verify=ca or True, realm_hosts=realm_hosts)


def _exit_codes_epilog() -> str:
    return "\b\nExit codes:\n" + "\n".join(f"  {code.value}  {text}" for code, text in EXIT_HELP.items())


@click.group(epilog=_exit_codes_epilog())
@click.option("--inventory", "-i", envvar="REGDEPLOY_INVENTORY", type=click.Path(exists=True, dir_okay=False),
              help="pyinfra inventory: the registry is its registry_servers host.")
@click.option("--registry", "-r", envvar="REGDEPLOY_REGISTRY", metavar="HOST:PORT",
              help="Registry address (overrides the inventory's); http:// unless --tls or https://.")
@click.option("--tls", is_flag=True, help="Talk HTTPS to the registry.")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False), help="CA bundle for --tls.")
@click.option("--username", envvar="REGDEPLOY_USERNAME")
@click.option("--password", envvar="REGDEPLOY_PASSWORD",
              help="Prefer --password-stdin: an argument shows in the process list.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--page-size", default=100, show_default=True, type=click.IntRange(1, 1000),
              help="Entries asked for per API page (the listing follows every page).")
@click.version_option(__version__, prog_name="regdeploy", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx, inventory, registry, tls, ca, username, password, password_stdin, page_size):
    """Work with the registry regdeploy deployed."""
    if password_stdin:
        if password:
            raise click.UsageError("--password and --password-stdin exclude each other")
        if not username:
            raise click.UsageError("--password-stdin needs --username")
        password = sys.stdin.readline().rstrip("\r\n")
    ctx.obj = Context(inventory, registry, tls, ca, username, password, page_size)


def _json(data) -> None:
    click.echo(json.dumps(data, indent=2))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: [{repository, tags}].")
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
        raise registry_failure(exc) from None
    if as_json:
        _json([{"repository": name, "tags": listing[name]} if tags else {"repository": name}
               for name in repositories])
        return
    width = max([len("REPOSITORY")] + [len(name) for name in repositories])
    click.echo(f"{'REPOSITORY':{width}}  TAGS" if tags else "REPOSITORY")
    for name in repositories:
        click.echo(f"{name:{width}}  {' '.join(listing[name] or [])}" if tags else name)
    click.echo(f"({len(repositories)} {'repository' if len(repositories) == 1 else 'repositories'})", err=True)


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: {repository, tags}.")
@click.pass_obj
def tags(ctx: Context, name: str, as_json: bool) -> None:
    """List the tags of repository NAME."""
    try:
        found = ctx.client().tags(name, page_size=ctx.page_size)
    except RegistryError as exc:
        raise registry_failure(exc) from None
    if as_json:
        _json({"repository": name, "tags": found})
    else:
        for tag in found:
            click.echo(tag)


@main.command("check-ref")
@click.argument("references", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: [{reference, valid, normalized or error}].")
def check_ref(references: tuple[str, ...], as_json: bool) -> None:
    """Validate image references by Docker's rules and print their normalized form (exit 2 if any
    is invalid)."""
    results = []
    for ref in references:
        try:
            results.append({"reference": ref, "valid": True, "normalized": reference.parse(ref).normalized})
        except reference.ReferenceError as exc:
            results.append({"reference": ref, "valid": False, "error": str(exc)})
    if as_json:
        _json(results)
    else:
        for result in results:
            click.echo(f"valid    {result['reference']} -> {result['normalized']}" if result["valid"]
                       else f"invalid  {result['reference']}: {result['error']}")
    sys.exit(Exit.OK if all(r["valid"] for r in results) else Exit.BAD_INPUT)


_DIGEST_RE = re.compile(r"digest: (sha256:[0-9a-f]{64})")


def _host(ctx: Context, name: str | None, option: str) -> InventoryHost:
    fleet = ctx.fleet
    names = {h.name: h for h in fleet.hosts}
    found = names.get(name or fleet.server.name)
    if found is None:
        raise Failure(f"{option} {name!r} is not one of the inventory's hosts in regdeploy's groups "
                      f"({', '.join(names)})", Exit.NOT_FOUND)
    return found


@main.command()
@click.argument("source")
@click.argument("target", required=False)
@click.option("--on", "on_host", help="Inventory host that does the copy (default: the registry server).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: {source, target, digest, host}.")
@click.pass_obj
def copy(ctx: Context, source: str, target: str | None, on_host: str | None, as_json: bool) -> None:
    """Copy image SOURCE into the registry: pull, tag, push, remove the local copies.

    TARGET is the name inside the registry (default: SOURCE's path and tag, e.g. busybox:1.36 ->
    <registry>/busybox:1.36). The copy runs with Docker on an inventory host, reached as the deploy
    reaches it (its SSH settings, `_sudo`).
    """
    fleet = ctx.fleet
    try:
        src = reference.parse(source)
        dest = reference.parse(f"{fleet.registry_address}/{target}") if target else src.in_registry(fleet.registry_address)
    except reference.ReferenceError as exc:
        raise click.BadParameter(str(exc)) from None
    worker = _host(ctx, on_host, "--on")
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
    progress = Progress(f"copy {src.familiar} -> {dest_name} on {worker.name}")
    progress.items(0, 1, final=True)
    output = io.BytesIO()
    status = ctx.run_on(worker, "copy", script, stdout=output)
    progress.items(int(status == 0), 1, final=True)
    progress.done()
    text = output.getvalue().decode(errors="replace")
    if status != 0:
        raise Failure(f"copy failed on {worker.name} (exit {status}): {text.strip()[-2000:]}")
    match = _DIGEST_RE.search(text)
    report = {"source": src.familiar, "target": dest_name, "digest": match.group(1) if match else None,
              "host": worker.name}
    if as_json:
        _json(report)
    else:
        click.echo(f"{report['target']} {report['digest']} (copied on {worker.name})")


def _require_disk_storage(ctx: Context, what: str) -> None:
    """backup, restore and gc's dry run read or write registry_data_dir: on S3 a backup would be an
    empty archive. (gc and prune on S3 go replica by replica: _Replicas.)"""
    storage = ctx.fleet.server.settings.registry_storage
    if storage != "filesystem":
        raise Failure(
            f"regdeploy {what} works on a registry stored on its server's disk; this one is stored in S3 "
            f"(registry_storage={storage}): use the store's own tools (bucket versioning, snapshots, "
            "replication). Nothing was done", Exit.REFUSED)


def _run_on_server(ctx: Context, what: str, template: str, stdin=None, stdout=None, progress=None, **extra) -> int:
    """Render a templates/ script for the inventory's registry server and run it there, reached as
    the deploy reaches it, with a connection of its own (the host's deploy lock belongs to it);
    its stderr (messages) goes to ours. A refusal for safety (REFUSED) exits with Exit.REFUSED."""
    fleet = ctx.fleet
    _require_disk_storage(ctx, what)
    script = registry_files.server_script(fleet.server.settings, template, deploy_lock.holder(f"regdeploy {what}"),
                                          **extra)
    status = ctx.run_on(fleet.server, what, script, stdin=stdin, stdout=stdout, progress=progress)
    if status == SCRIPT_REFUSED:
        raise Failure(f"{what} refused on {fleet.server.name} (see above); nothing was changed", Exit.REFUSED)
    return status


class _Replicas:
    """One SSH connection per registry replica, opened first and closed last (each host's deploy lock
    belongs to it), on which the regdeploy command runs the steps of templates/replica-maintenance.sh.j2
    (regdeploy.maintenance) for `what` (gc, prune)."""

    def __init__(self, ctx: Context, what: str):
        self.ctx, self.what = ctx, what
        self.hosts = {h.name: h for h in ctx.fleet.servers}
        # registry_lb_cache: the load balancers, whose cache is emptied after the collector ran. Reached
        # before anything changes: one that cannot be reached could keep a stale cache.
        self.lbs = [h.name for h in ctx.fleet.lbs] if ctx.fleet.server.settings.blob_cache_address else []
        self.stack = contextlib.ExitStack()
        self.connections: dict[str, remote.Connection] = {}

    def __enter__(self) -> "_Replicas":
        try:
            for name in [*self.hosts, *self.lbs]:
                self.connections[name] = self.stack.enter_context(remote.connect(self.ctx.inventory_path, name))
        except remote.AuthRefused as exc:
            self.stack.close()
            raise Failure(f"{self.what}: {exc}; nothing was changed", Exit.AUTH_REFUSED) from None
        except remote.Unreachable as exc:
            self.stack.close()
            raise Failure(f"{self.what}: {exc}; nothing was changed", Exit.UNREACHABLE) from None
        return self

    def __exit__(self, *exc) -> None:
        self.stack.close()

    def run(self, name: str, step: str, extra: dict) -> tuple[int, bytes]:
        from . import maintenance
        settings = self.hosts[name].settings
        script = maintenance.replica_script(settings, step, deploy_lock.holder(f"regdeploy {self.what}"), **extra)
        output = io.BytesIO()
        status = self.connections[name].run(script, stdin=io.BytesIO(maintenance.step_input(settings, step)),
                                            stdout=output)
        return status, output.getvalue()

    def flush(self) -> list[str]:
        """Empty the cache on every load balancer; those where it failed."""
        from .load_balancer import CACHE_FLUSH_PATH
        failed = []
        for name in self.lbs:
            if self.connections[name].run(f"exec {CACHE_FLUSH_PATH}", stdout=io.BytesIO()) != 0:
                failed.append(name)
        if self.lbs and not failed:
            click.echo(f"{self.what}: emptied the replicas' blob-descriptor cache on {', '.join(self.lbs)}", err=True)
        return failed

    def collect(self, **collect_extra) -> dict:
        """Every replica read-only in turn, the collection on the first, the cache emptied, every one
        writable again."""
        from . import maintenance
        try:
            outcome = maintenance.collect_on_replicas(list(self.hosts), self.run, collect_extra, flush=self.flush)
        except maintenance.CacheNotEmptied as exc:
            raise Failure(f"{self.what}: the collector ran, but {exc} (see above): it may still name a layer "
                          f"just deleted, and a push would then link a layer that is gone. Every replica was "
                          f"left read-only (pulls work, pushes are refused): once redis answers on "
                          f"{', '.join(exc.lbs)}, run `regdeploy {self.what}` again, which empties it and "
                          "makes them writable (a deploy would make them writable with the cache as it is)") from None
        except maintenance.StepFailed as exc:
            left = exc.outcome.not_put_back if exc.outcome else []
            raise Failure(f"{self.what}: {exc} (see above); nothing was collected, and every replica switched to "
                          "read-only was switched back" + (f" but {', '.join(left)}: run the deploy to restore it"
                                                            if left else ""),
                          Exit.REFUSED if exc.status == SCRIPT_REFUSED else Exit.FAILED)
        if outcome.not_put_back:
            raise Failure(f"{self.what}: collected, but {', '.join(outcome.not_put_back)} could not be made "
                          "writable again (see above): run the deploy to restore it")
        return outcome.report


@main.command()
@click.argument("archive", type=click.Path(dir_okay=False, writable=True))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: {archive, bytes, host}.")
@click.pass_obj
def backup(ctx: Context, archive: str, as_json: bool) -> None:
    """Write a consistent copy of the registry's storage to ARCHIVE (a tar).

    The registry is read-only meanwhile (pulls keep working, pushes are refused) and holds the
    host's deploy lock, so no deploy runs at the same time. The archive records every tag and its
    manifest digest; `regdeploy restore` checks them.
    """
    _require_disk_storage(ctx, "backup")
    partial = Path(archive + ".partial")
    progress = Progress(f"backup from {ctx.fleet.server.name}")
    try:
        with open(partial, "wb") as out:
            status = _run_on_server(ctx, "backup", "registry-backup.sh.j2", stdout=out, progress=progress.bytes)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    progress.bytes(partial.stat().st_size, final=True)
    progress.done()
    if status != 0:
        partial.unlink(missing_ok=True)
        raise Failure(f"backup failed on {ctx.fleet.server.name} (see above); no archive was written")
    partial.replace(archive)
    size = Path(archive).stat().st_size
    if as_json:
        _json({"archive": archive, "bytes": size, "host": ctx.fleet.server.name})
    click.echo(f"wrote {archive} ({size} bytes) from {ctx.fleet.server.name}", err=True)


@main.command()
@click.option("--keep-untagged", is_flag=True,
              help="Free only blobs no manifest refers to; keep manifests that lost their tag.")
@click.option("--dry-run", is_flag=True,
              help="List what a collection would free now (the collector's own dry run); change nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable: {freed_bytes, before_bytes, after_bytes, readonly_seconds, "
                   "collector_seconds, readonly_from, readonly_until, delete_untagged, indexes, tags}; with "
                   "--dry-run {dry_run, blobs: [{digest, bytes}], manifests, bytes}.")
@click.pass_obj
def gc(ctx: Context, keep_untagged: bool, dry_run: bool, as_json: bool) -> None:
    """Free the storage of images nothing refers to any more (registry garbage-collect).

    The registry is read-only meanwhile (pulls keep working, pushes are refused) and holds the
    host's deploy lock. Replicas on S3 are made read-only one at a time, each drained on the load
    balancers first, then one collects against the bucket, then each is made writable again.
    Manifests that lost their tag go too (--delete-untagged), unless --keep-untagged or the registry
    stores an image index (multi-arch): the collector would take the index's platform manifests with
    them (distribution issue 3178). Every tag must be served with the same digest afterwards. With
    --dry-run the registry stays as it is, writable.
    """
    if ctx.fleet.server.settings.registry_storage == "s3":
        if dry_run:
            raise Failure("gc --dry-run reads a registry stored on its server's disk; this one is stored in S3: "
                          "`regdeploy prune --dry-run` lists what the retention rules would delete. Nothing was "
                          "done", Exit.REFUSED)
        with _Replicas(ctx, "gc") as replicas:
            report = replicas.collect(delete_untagged=not keep_untagged)
        if as_json:
            _json(report)
        else:
            click.echo(f"freed {report['freed_bytes']} bytes; read-only {report['readonly_seconds']} s "
                       f"({len(report['replicas'])} replicas, one at a time); {report['tags']} tags still served "
                       "with the same digests")
        return
    output = io.BytesIO()
    status = _run_on_server(ctx, "gc", "registry-gc.sh.j2", stdout=output, delete_untagged=not keep_untagged,
                            dry_run=dry_run)
    if status != 0:
        raise Failure(f"garbage collection{' (dry run)' if dry_run else ''} failed on {ctx.fleet.server.name} "
                      "(see above)")
    lines = output.getvalue().decode().splitlines()
    report = dry_run_report(lines) if dry_run else json.loads(lines[-1])
    if as_json:
        _json(report)
    elif dry_run:
        for blob in report["blobs"]:
            click.echo(f"blob      {blob['digest']}  {blob['bytes']} bytes")
        for manifest in report["manifests"]:
            click.echo(f"manifest  {manifest}")
        click.echo(f"would free {report['bytes']} bytes: {len(report['blobs'])} blobs, "
                   f"{len(report['manifests'])} manifests (dry run: nothing was changed)")
    else:
        click.echo(f"freed {report['freed_bytes']} bytes; read-only {report['readonly_seconds']} s; "
                   f"{report['tags']} tags still served with the same digests")


@main.command()
@click.option("--dry-run", is_flag=True,
              help="List every tag and manifest the rules would delete and the bytes that would be freed; "
                   "change nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable: {repositories, tags_kept, tags_deleted, manifests_deleted, "
                   "freed_bytes_at_least, delete: [{repository, tag, digest}], delete_manifests, untouched, "
                   "pulls_unknown}, "
                   "and after a real run gc's report in `collected`.")
@click.pass_obj
def prune(ctx: Context, dry_run: bool, as_json: bool) -> None:
    """Delete the tags registry_retention's rules do not keep, then collect garbage.

    What goes is decided once, from the server's storage or the replicas' bucket (each tag's last
    push). In the registry's read-only window (pulls keep working, pushes are refused; replicas go
    read-only one at a time, as for gc), each tag goes only while it still points at the digest it
    had then, each manifest only while no tag refers to it; then the collector frees what nothing
    refers to. A repository no rule matches is never touched.
    """
    from . import retention
    settings = ctx.fleet.server.settings
    rules = retention.parse_rules(settings.registry_retention)
    if not rules:
        raise Failure("registry_retention has no rule: prune deletes nothing unless rules say what to keep "
                      "(e.g. '* keep=10 protect=latest')", Exit.BAD_INPUT)
    window = retention.pulls_window(rules)
    if settings.registry_storage == "s3":
        with _Replicas(ctx, "prune") as replicas:
            status, listed = replicas.run(ctx.fleet.server.name, "list", {})
            if status != 0:
                raise Failure(f"could not read the bucket from {ctx.fleet.server.name} (see above); nothing was "
                              "deleted", Exit.REFUSED if status == SCRIPT_REFUSED else Exit.FAILED)
            if window:  # every replica's access log: a pull may have reached any of them
                for name in replicas.hosts:
                    status, pulls = replicas.run(name, "pulls", {"pulls_window": window})
                    listed += pulls if status == 0 else f"log {name} unknown\n".encode()
            _prune(ctx, rules, listed, dry_run, as_json, replicas)
        return
    listing = io.BytesIO()
    if _run_on_server(ctx, "prune", "registry-storage.sh.j2", stdout=listing, pulls_window=window) != 0:
        raise Failure(f"could not read the registry's storage on {ctx.fleet.server.name} (see above); "
                      "nothing was deleted")
    _prune(ctx, rules, listing.getvalue(), dry_run, as_json)


def _prune(ctx: Context, rules, listed: bytes, dry_run: bool, as_json: bool, replicas: "_Replicas | None" = None):
    """prune, once the storage is listed: the plan, the dry run's list, or the deletions and the collection
    (on one server, or on `replicas` one at a time)."""
    from . import retention
    storage = retention.parse_storage(listed.decode().splitlines())
    found = retention.plan(rules, storage, int(time.time()))
    report = found.report()
    for rule in found.pulls_unknown:
        click.echo(f"regdeploy: every tag under `{rule}` stays: a registry's access log does not reach back over "
                   "its pulled= window, or could not be read", err=True)
    if dry_run or not found.delete_tags:
        report["dry_run"] = dry_run
        if as_json:
            _json(report)
            return
        for entry in report["delete"]:
            click.echo(f"tag       {entry['repository']}:{entry['tag']}  {entry['digest']}")
        for entry in report["delete_manifests"]:
            click.echo(f"manifest  {entry['repository']}@{entry['digest']}")
        click.echo(f"{'would delete' if dry_run else 'nothing to delete:'} {report['tags_deleted']} tags and "
                   f"{report['manifests_deleted']} manifests in {report['repositories']} repositories, keeping "
                   f"{report['tags_kept']} tags; at least {report['freed_bytes_at_least']} bytes"
                   + (" (dry run: nothing was changed)" if dry_run else ""))
        return
    try:
        given = retention.script_input(found, storage)
    except retention.RetentionError as exc:
        raise Failure(str(exc), Exit.REFUSED) from None
    if replicas is not None:
        report["collected"] = replicas.collect(delete_untagged=True, prune=given)
    else:
        output = io.BytesIO()
        if _run_on_server(ctx, "prune", "registry-gc.sh.j2", stdout=output, delete_untagged=True, prune=given) != 0:
            raise Failure(f"prune failed on {ctx.fleet.server.name} (see above)")
        report["collected"] = json.loads(output.getvalue().decode().splitlines()[-1])
    if as_json:
        _json(report)
        return
    collected = report["collected"]
    click.echo(f"deleted {collected['pruned_tags']} tags and {collected['pruned_manifests']} manifests "
               f"({collected['skipped_tags']} kept: pushed again since); kept {report['tags_kept']} tags; "
               f"{collected['before_bytes']} bytes before, {collected['after_bytes']} after; "
               f"read-only {collected['readonly_seconds']} s")


def dry_run_report(lines: list[str]) -> dict:
    """The gc script's dry-run lines (`blob DIGEST BYTES`, `manifest DIGEST`) as the report."""
    blobs = [{"digest": digest, "bytes": int(size)} for kind, digest, size in
             (line.split() for line in lines if line.startswith("blob "))]
    manifests = [line.split()[1] for line in lines if line.startswith("manifest ")]
    return {"dry_run": True, "blobs": blobs, "manifests": manifests, "bytes": sum(b["bytes"] for b in blobs)}


@main.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: {archive, bytes, host}.")
@click.pass_obj
def restore(ctx: Context, archive: str, as_json: bool) -> None:
    """Restore a `regdeploy backup` ARCHIVE onto the inventory's registry server.

    Deploy the server first; its storage directory must be empty (a restore never merges: exit 6
    otherwise). The restored registry must then serve every tag with the digest the backup recorded.
    """
    progress = Progress(f"restore onto {ctx.fleet.server.name}")
    with open(archive, "rb") as source:
        status = _run_on_server(ctx, "restore", "registry-restore.sh.j2", stdin=source, stdout=io.BytesIO(),
                                progress=progress.bytes)
    progress.bytes(Path(archive).stat().st_size, final=True)
    progress.done()
    if status != 0:
        raise Failure(f"restore failed on {ctx.fleet.server.name} (see above)")
    if as_json:
        _json({"archive": archive, "bytes": Path(archive).stat().st_size, "host": ctx.fleet.server.name})


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def verify(ctx: Context, pytest_args: tuple[str, ...]) -> None:
    """Verify the --inventory's deployed hosts: the verify suite (testinfra; a real push and pull on
    every host), installed with `pip install 'regdeploy[verify]'`. PYTEST_ARGS go to pytest, e.g.
    --test-image-archive=busybox.tar (an air-gapped fleet) or -x. Exit 1 when a check fails."""
    if not ctx.inventory:
        raise click.UsageError("verify needs --inventory (or $REGDEPLOY_INVENTORY)")
    ctx.fleet  # a bad inventory is bad input (exit 2) before any host is reached
    import importlib
    import importlib.util

    if not all(importlib.util.find_spec(name) for name in ("pytest", "testinfra", "yaml")):
        raise Failure("the verify suite needs pytest and testinfra: pip install 'regdeploy[verify]'",
                      Exit.BAD_INPUT)
    import pytest

    suite = importlib.import_module("regdeploy.verify")  # tests/verify, shipped as regdeploy.verify

    # The suite's folder, not --pyargs: pytest reads the options its conftest.py declares only from
    # the conftest files of paths it is given.
    status = pytest.main([str(Path(str(suite.__file__)).parent), f"--inventory={Path(ctx.inventory_path).resolve()}",
                          "-p", "no:cacheprovider", *pytest_args])
    sys.exit(Exit.OK if status == 0 else Exit.BAD_INPUT if status == pytest.ExitCode.USAGE_ERROR else Exit.FAILED)


@main.command("rotate-ca")
@click.argument("step", type=click.Choice(["begin", "switch", "finish", "cert"]))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: {step, directory, done}.")
@click.pass_obj
def rotate_ca(ctx: Context, step: str, as_json: bool) -> None:
    """One step of a rotation of the CA regdeploy made, on the controller only (in registry_tls_dir);
    deploy after each: begin (every host trusts a next CA too), switch (the server's certificate is
    re-issued by it), finish (the old CA goes). `cert` rotates the server's certificate alone (a new
    key, same CA). Exit 6 when a step is out of order."""
    from .pki import TlsError, rotate_ca as rotate, rotate_cert

    settings = ctx.fleet.server.settings
    if not settings.registry_tls or settings.registry_tls_ca:
        raise Failure("rotate-ca rotates the CA regdeploy made: the inventory has registry_tls off, or its own "
                      "CA (registry_tls_ca)", Exit.BAD_INPUT)
    try:
        directory = Path(settings.registry_tls_dir)
        done = rotate_cert(directory) if step == "cert" else rotate(directory, step)
    except TlsError as exc:
        raise Failure(str(exc), Exit.REFUSED) from None
    if as_json:
        _json({"step": step, "directory": settings.registry_tls_dir, "done": done})
    else:
        click.echo(done)


def markdown_reference() -> str:
    """The table of exit codes and of what each command's --json prints, from EXIT_HELP
    and the commands' own --json help: docs/reference/cli.md (docs/generate.py, checked by a unit test)."""
    rows = ["| exit code | meaning |", "| --- | --- |"]
    rows += [f"| {code.value} | {text} |" for code, text in EXIT_HELP.items()]
    rows += ["", "| command | `--json` prints |", "| --- | --- |"]
    for name, command in sorted(main.commands.items()):
        option = next((p for p in command.params if p.name == "as_json"), None)
        if option is not None:
            rows.append(f"| `{name}` | {(option.help or '').removeprefix('Machine-readable: ')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_reference())

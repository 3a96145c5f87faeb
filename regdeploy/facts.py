"""pyinfra facts regdeploy needs beyond pyinfra's own (which it uses wherever they fit)."""

from __future__ import annotations

from typing import Iterable

from pyinfra.api import FactBase

from . import registry_files
from .daemon_config import INSECURE_REGISTRIES_FORMAT
from .deploy_lock import LOCK_PATH
from .docker_packages import packages_to_check
from .host_state import UNIT_SEPARATOR, HostState, parse_catalog_lines, parse_host_state
from .registry_plan import ASIDE_SUFFIX, MIGRATION_MARKER, MOVED_MARKER, SPEC_LABEL, STORAGE_TARGET
from .registry_run import cache_facts, registry_facts
from .settings import Settings


# dpkg-query's answer, kept on each host with the mtime of dpkg's database it was read at (see
# templates/facts/docker-host-state.sh.j2); /var/cache: deleting it loses nothing but one query's time.
DPKG_CACHE = "/var/cache/regdeploy/dpkg-query"


class DockerHostState(FactBase):
    """What regdeploy needs to know about a Docker host, in one round trip (pyinfra 3 gathers
    every fact anew, so a converged host costs its number of facts — here one), as a
    host_state.HostState:

    - `packages`: {name: installed?} for the packages asked about;
    - `active`, `enabled`: the docker service's state;
    - `command_line_registries`: where dockerd gets --insecure-registry on its command line (the
      running daemon, its unit and drop-ins, /etc/default/docker): dockerd refuses to start when
      daemon.json sets the same option;
    - `dockerd_version`: the installed docker-ce or docker.io package's version (None: neither),
      which decides how a new daemon.json is checked (daemon_config.can_validate);
    - `trusted`: the registries the running dockerd treats as insecure, asked only when daemon.json
      is not the file regdeploy last saw dockerd take (None: not asked, or no answer);
    - `daemon_json_kind`: present (a regular file), symlink, other (a directory, a fifo...) or absent,
      with `daemon_json_detail` its mode (present), link target (symlink) or file type (other);
    - `daemon_json`: the raw text of daemon.json, None unless it is a regular file;
    - `files`: {label: "SHA256 MODE OWNER"} for the files `checks` asks about that exist ("-" for the
      hash of a "lines" check), `lines`: {label: [line, ...]} the content of "lines" checks, and
      `stamps`: {label: "USER BCRYPT MODE"} for "stamp" checks whose credential is in place;
    - `versions`: {package: version} of the installed packages asked about (and containerd's);
    - `os`: /etc/os-release's ID, VERSION_ID and VERSION_CODENAME; `tools`: which of dockerd, podman
      and containerd are on the PATH (runtimes.resolve decides from them);
    - `registry` (asked on the registry server only): a registry_plan.ServerState, and `cache` the
      pull-through cache's (when it is configured).
    """

    def command(self, path: str, packages: tuple[str, ...] = (), lock: str = "", holder: str = "",
                lock_timeout: int = 0, registry: tuple | None = None, checks: tuple = (),
                cache: tuple | None = None, cache_name: str = "", dpkg_cache: str = DPKG_CACHE) -> str:
        """`lock`: the host's deploy lock file (empty: take none), `holder`: who takes it (shown to a
        deploy that has to wait), `lock_timeout`: how long to wait for it. `registry`, on the server:
        (config_path, data_dir, image, container, port) of the registry, read into `registry`; `cache`
        the same of the pull-through cache, read into `cache`; without one, `cache_name` is the
        container an earlier cache may have left (`cache_left`: whether regdeploy made it).
        `checks`: ("file", label, path), ("lines", label, path), ("masked", label, path) (lines, every
        secret's value masked: runtime_config.MASKED), ("stamp", label, stamp path, credential path,
        text the credential must contain or "") or ("home_stamp", label, local user, text): a "stamp"
        for a local user's Docker login, in their home, for the secure modes' files; ("running", label,
        unit): `running` gets the label while systemd has the unit active.
        `dpkg_cache`: where the host keeps dpkg-query's answer between runs (and beside it the search
        for --insecure-registry); empty: no cache, both asked every run (host_caches=false)."""
        from .rendering import render

        servers = [(prefix, (*spec[:4], int(spec[4]))) for prefix, spec in (("registry", registry), ("cache", cache))
                   if spec]
        return render("docker-host-state.sh.j2", path=path, packages=packages, lock=lock, holder=holder,
                      checks=checks,
                      lock_timeout=int(lock_timeout), insecure_registries_format=INSECURE_REGISTRIES_FORMAT,
                      servers=servers, also=cache_name, marker=MIGRATION_MARKER, moved_marker=MOVED_MARKER,
                      aside_suffix=ASIDE_SUFFIX, dpkg_cache=dpkg_cache,
                      spec_label=SPEC_LABEL, unit_separator=UNIT_SEPARATOR, storage_target=STORAGE_TARGET,
                      local_stamp=registry_files.LOCAL_LOGIN_STAMP)

    def process(self, output: Iterable[str]) -> HostState:
        return parse_host_state(list(output))


def host_state_arguments(settings: Settings, holder: str) -> dict:
    """What a deploy asks DockerHostState for on the host `settings` describe (`holder`: who takes the
    deploy lock, as a waiting run is told); tests/scripts.py renders the same for the golden files."""
    return dict(path=settings.docker_daemon_json, dpkg_cache=DPKG_CACHE if settings.host_caches else "",
                packages=tuple(packages_to_check(settings)), lock=LOCK_PATH, holder=holder,
                lock_timeout=settings.deploy_lock_timeout, checks=registry_files.fact_checks(settings),
                registry=registry_facts(settings) if settings.is_server else None,
                **(cache_facts(settings) if settings.is_server else {}))


class RegistryCatalog(FactBase):
    """Every repository in the registry with its tags ({name: [tags]}), read on the registry server
    over loopback with pagination; None when the registry does not answer (not deployed yet).

    The testinfra suite runs the same command and `parse()` so both see the registry alike.
    """

    def requires_command(self, *args, **kwargs) -> str:
        return "curl"

    def command(self, port: int, api: tuple[str, str, str], page_size: int = 100) -> str:
        """`api`: registry_files.loopback_api() as a tuple (base, connect, options)."""
        from .registry_files import LoopbackApi
        from .rendering import render

        return render("registry-catalog.sh.j2", port=int(port), api=LoopbackApi(*api), page_size=int(page_size))

    def process(self, output: Iterable[str]) -> dict[str, list[str]] | None:
        return parse_catalog_lines(list(output))

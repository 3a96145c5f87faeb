"""pyinfra facts regdeploy needs beyond pyinfra's own (which it uses wherever they fit)."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class DockerHostState(FactBase):
    """What regdeploy needs to know about a Docker host, in one round trip (pyinfra 3 gathers
    every fact anew, so a converged host costs its number of facts — here one):

    - `packages`: {name: installed?} for the packages asked about;
    - `active`, `enabled`: the docker service's state;
    - `command_line_registries`: where dockerd gets --insecure-registry on its command line (the
      running daemon, its unit and drop-ins, /etc/default/docker): dockerd refuses to start when
      daemon.json sets the same option;
    - `daemon_json`: the raw text of daemon.json, None when the file does not exist.
    """

    def command(self, path: str, packages: tuple[str, ...] = ()) -> str:
        quoted = shlex.quote(path)
        names = " ".join(shlex.quote(p) for p in packages)
        return (
            f"for p in {names}; do if dpkg-query -W -f='${{Status}}' \"$p\" 2>/dev/null"
            " | grep -q 'ok installed'; then echo \"package=$p installed\";"
            " else echo \"package=$p missing\"; fi; done;"
            " echo \"active=$(systemctl is-active docker 2>/dev/null)\";"
            " echo \"enabled=$(systemctl is-enabled docker 2>/dev/null)\";"
            " { for pid in $(pidof dockerd 2>/dev/null); do"
            " printf 'running dockerd: %s\\n' \"$(tr '\\0' ' ' < /proc/$pid/cmdline)\"; done;"
            " systemctl cat docker.service 2>/dev/null | grep -E '^[[:space:]]*ExecStart=';"
            " grep -hE '^[[:space:]]*(export[[:space:]]+)?DOCKER_OPTS=' /etc/default/docker 2>/dev/null; }"
            " | grep -e '--insecure-registry' | sed 's/^/flag=/';"
            f" if [ -e {quoted} ]; then echo daemon.json=present; cat {quoted};"
            " else echo daemon.json=absent; fi"
        )

    def process(self, output: list[str]) -> dict:
        state = {"packages": {}, "active": False, "enabled": False, "command_line_registries": [],
                 "daemon_json": None}
        for index, line in enumerate(output):
            key, _, value = line.partition("=")
            if key == "package":
                name, _, status = value.partition(" ")
                state["packages"][name] = status.strip() == "installed"
            elif key == "active":
                state["active"] = value.strip() == "active"
            elif key == "enabled":
                state["enabled"] = value.strip() == "enabled"
            elif key == "flag":
                state["command_line_registries"].append(value.strip())
            elif key == "daemon.json":
                if value.strip() == "present":
                    state["daemon_json"] = "\n".join(output[index + 1:])
                break
        return state


class DockerdCanValidate(FactBase):
    """Whether this dockerd has `--validate` (Docker 23.0+) to check a config file before use."""

    def requires_command(self) -> str:
        return "dockerd"

    def command(self) -> str:
        return "dockerd --help 2>&1 | grep -c -e '--validate' || true"

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[0].strip() not in ("", "0")


class RegistryCatalog(FactBase):
    """Every repository in the registry with its tags ({name: [tags]}), read on the registry server
    over loopback with pagination; None when the registry does not answer (not deployed yet).

    The testinfra suite runs the same command and `parse()` so both see the registry alike.
    """

    def requires_command(self, *args, **kwargs) -> str:
        return "curl"

    def command(self, port: int, page_size: int = 100) -> str:
        from .rendering import render

        return render("registry-catalog.sh.j2", port=int(port), page_size=int(page_size))

    def process(self, output: list[str]) -> dict[str, list[str]] | None:
        return parse_catalog_lines(output)


def parse_catalog_lines(lines: list[str]) -> dict[str, list[str]] | None:
    if lines and lines[0].strip() == "unreachable":
        return None
    catalog: dict[str, list[str]] = {}
    for line in lines:
        kind, _, rest = line.strip().partition(" ")
        if kind == "repository":
            catalog.setdefault(rest, [])
        elif kind == "tag":
            name, _, tag = rest.partition(" ")
            catalog.setdefault(name, []).append(tag)
    return catalog


class RegistryFiles(FactBase):
    """The registry server's files in one round trip: SHA-256 of config.yml (None if absent) and
    whether the storage directory exists. Lets a converged server skip pyinfra's file operations,
    which cost three facts each."""

    def command(self, config_path: str, data_dir: str) -> str:
        config, data = shlex.quote(config_path), shlex.quote(data_dir)
        return (f"if [ -f {config} ]; then echo \"config=$(sha256sum < {config} | cut -d' ' -f1)\"; fi;"
                f" if [ -d {data} ]; then echo data_dir=present; fi")

    @staticmethod
    def default() -> dict:
        return {"config_sha256": None, "data_dir": False}

    def process(self, output: list[str]) -> dict:
        values = dict(line.strip().partition("=")[::2] for line in output if "=" in line)
        return {"config_sha256": values.get("config"), "data_dir": values.get("data_dir") == "present"}

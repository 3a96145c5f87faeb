"""Every inventory variable regdeploy reads, declared once: its default, its kind (type and check)
and its help text.

`Settings`' fields and their types (held to these by a unit test), the per-value validation and the
docs' variables page (docs/generate.py, checked by a unit test) all derive from `VARIABLES`: adding a
variable is one entry here, its field in `Settings`, and its use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import reference
from .runtimes import RUNTIMES


class Invalid(ValueError):
    """A value a kind refuses; the message names the variable and what to set instead."""


@dataclass(frozen=True)
class Kind:
    """How a variable's raw value (inventory data, or a string from `--data`) becomes its setting."""

    accepts: str  # for the docs: what may be given
    type: type = str

    def parse(self, name: str, value: Any) -> Any:
        return str(value)


@dataclass(frozen=True)
class Text(Kind):
    pattern: str = ""
    refusal: str = ""  # "{name}={value!r} ..." completes the error; empty: no check
    strip: str = ""  # trailing characters dropped (e.g. "/" from URLs)
    lower: bool = False

    def parse(self, name: str, value: Any) -> str:
        text = str(value).strip().rstrip(self.strip)
        text = text.lower() if self.lower else text
        if self.pattern and not re.fullmatch(self.pattern, text):
            raise Invalid(f"{name}={text!r} {self.refusal}")
        return text


@dataclass(frozen=True)
class Integer(Kind):
    low: int = 0
    high: int = 0
    type: type = int

    def parse(self, name: str, value: Any) -> int:
        try:
            number = int(value)
            if isinstance(value, bool) or str(number) != str(value).strip():
                raise ValueError
        except (TypeError, ValueError):
            raise Invalid(f"{name}={value!r} is not a whole number; set it to {self.low}..{self.high}") from None
        if not self.low <= number <= self.high:
            raise Invalid(f"{name}={number} is out of range; set it to {self.low}..{self.high}")
        return number


@dataclass(frozen=True)
class Choice(Kind):
    options: tuple[str, ...] = ()

    def parse(self, name: str, value: Any) -> str:
        if str(value) not in self.options:
            raise Invalid(f"{name}={str(value)!r} is unknown; use one of {', '.join(self.options)}")
        return str(value)


@dataclass(frozen=True)
class AbsolutePath(Kind):
    def parse(self, name: str, value: Any) -> str:
        path = str(value)
        if not path.startswith("/") or "\n" in path:
            raise Invalid(f"{name}={path!r} must be an absolute path on the host")
        return path.rstrip("/") or "/"


@dataclass(frozen=True)
class ImageReference(Kind):
    def parse(self, name: str, value: Any) -> str:
        try:
            reference.parse(str(value))
        except reference.ReferenceError as exc:
            raise Invalid(f"{name}: {exc}") from None
        return str(value)


@dataclass(frozen=True)
class Flag(Kind):
    """On or off: a bool, or its spelling from `--data` (true/false, yes/no, on/off, 1/0)."""

    type: type = bool

    def parse(self, name: str, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        spelled = str(value).strip().lower()
        if spelled in ("true", "yes", "on", "1"):
            return True
        if spelled in ("false", "no", "off", "0", ""):
            return False
        raise Invalid(f"{name}={value!r} is neither on nor off; set it to true or false")


@dataclass(frozen=True)
class ListOf(Kind):
    """A list; `--data name=a,b` gives it as one comma-separated string."""

    item: Kind = Kind("")
    item_refusal: str = ""  # for items checked by `item.pattern`: "{name} entry {value!r} ..."
    type: type = tuple
    separator: str = ","  # between the items of one string (`--data`)

    def parse(self, name: str, value: Any) -> tuple:
        items = ([i.strip() for i in value.split(self.separator) if i.strip()] if isinstance(value, str)
                 else list(value))
        parsed, problems = [], []
        for entry in items:
            try:
                parsed.append(self.item.parse(name, entry))
            except Invalid as exc:
                problems.append(f"{name} entry {str(entry)!r} {self.item_refusal}" if self.item_refusal else str(exc))
        if problems:
            raise Invalid("; ".join(problems))
        return tuple(parsed)


HOST_NAME = (r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
             r"|\[[0-9a-fA-F:]+\]")
IPV4 = r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_CIDR = rf"|{IPV4}(?:/(?:3[0-2]|[12]?[0-9]))?"
HTTP_URL = r"https?://[^\s/]+\S*"
INSTALL_SOURCES = ("distro", "docker-ce", "none")
STORAGE_KINDS = ("filesystem", "s3")
LB_MODES = ("haproxy", "ipvs")
# Docker's container names.
CONTAINER_NAME = Text("a container name", pattern=r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", refusal="is not a valid container name")
# pyinfra inventory groups: the names of a Python inventory file's lists, or of group_data files.
GROUP_NAME = Text("a group name", pattern=r"[A-Za-z_][A-Za-z0-9_]*", refusal="is not an inventory group name")
# htpasswd user names: no colon (the file's separator), nothing a shell or YAML would need quoted.
USER_NAME = r"[A-Za-z0-9][A-Za-z0-9._@-]*"


@dataclass(frozen=True)
class Variable:
    name: str
    default: Any
    kind: Kind
    help: str
    # Every host must agree on it, since they all talk to the same registry (checked before any host
    # is touched).
    shared: bool = False


VARIABLES: tuple[Variable, ...] = (
    Variable("registry_host", "", Text("a host name or IP address, or empty", pattern=f"|{HOST_NAME}",
                                       refusal="is not a host name or IP address; set it to the name clients "
                                               "use to reach the registry server"),
             "Name clients use to reach the registry. Empty: the `registry_lb` host's inventory name, else "
             "the server's."),
    Variable("registry_port", 5000, Integer("1..65535", low=1, high=65535),
             "Port the registry is published on (host side)."),
    Variable("registry_metrics_port", 0, Integer("0..65535", low=0, high=65535),
             "Publish the registry's debug endpoint (`/debug/health`, Prometheus `/metrics`) on this port of "
             "the server, for a scraper. 0: on the server's loopback only."),
    Variable("registry_image", "registry:2", ImageReference("an image reference"),
             "Registry image reference (Docker's naming rules); `registry:3` works as well (its config path "
             "differs: regdeploy names its config either way)."),
    Variable("registry_image_archive", "", Kind("a path on the controller, or empty"),
             "Air-gapped sites: a `docker save` tarball on the controller, loaded instead of pulled."),
    Variable("registry_image_archive_sha256", "",
             Text("64 hex digits, or empty", pattern=r"|[0-9a-f]{64}", refusal="must be 64 hex digits", lower=True),
             "Expected SHA-256 of `registry_image_archive`, checked on the controller and the server."),
    Variable("registry_container_name", "registry", CONTAINER_NAME, "Name of the registry container."),
    Variable("registry_data_dir", "/var/lib/registry", AbsolutePath("an absolute path"),
             "Host directory holding the registry's storage."),
    Variable("registry_config_dir", "/etc/regdeploy", AbsolutePath("an absolute path"),
             "Host directory for the rendered registry config.yml (mounted read-only)."),
    Variable("registry_restart_policy", "always",
             Text("no, always, unless-stopped, on-failure[:N]", pattern=r"no|always|unless-stopped|on-failure(:[0-9]+)?",
                  refusal="is not a Docker restart policy; use no, always, unless-stopped or on-failure[:N]"),
             "Restart policy of the registry container."),
    Variable("registry_ready_timeout", 60, Integer("1..3600", low=1, high=3600),
             "Seconds to wait for `GET /v2/` after the registry (re)starts before failing."),
    Variable("registry_mirrors", [], ListOf("list of http(s):// URLs", item=Text("", pattern=HTTP_URL),
                                            item_refusal="must be an http(s):// URL"),
             "Optional `registry-mirrors` merged into every client's daemon.json."),
    Variable("registry_proxy_remote_url", "",
             Text("an http(s):// URL, or empty", pattern=f"|{HTTP_URL}", refusal="must be an http(s):// URL", strip="/"),
             "Run a second, read-only registry on the server as a pull-through cache of this upstream (e.g. "
             "`https://registry-1.docker.io`), and put it in every Docker host's `registry-mirrors`. Empty: no cache "
             "(one left by an earlier run is removed; its data stays).", shared=True),
    Variable("registry_proxy_port", 5002, Integer("1..65535", low=1, high=65535),
             "Port the pull-through cache is published on (host side).", shared=True),
    Variable("registry_proxy_username", "", Text("a user name, or empty", pattern=r"|[^\s:]+",
                                                 refusal="is not a user name (no spaces or colons)"),
             "The upstream's account, if it needs one. Its password never goes in the inventory: "
             "`REGDEPLOY_PROXY_PASSWORD` in the environment, else the first line of `registry_proxy_password_file`."),
    Variable("registry_proxy_password_file", ".regdeploy/proxy-password", Kind("a file on the controller"),
             "Untracked file (mode 0600) whose first line is `registry_proxy_username`'s password; the environment wins."),
    Variable("registry_proxy_container_name", "registry-cache", CONTAINER_NAME,
             "Name of the pull-through cache's container."),
    Variable("registry_proxy_data_dir", "/var/lib/registry-cache", AbsolutePath("an absolute path"),
             "Host directory holding the pull-through cache's storage (kept when the cache is removed)."),
    Variable("registry_storage", "filesystem", Choice(", ".join(STORAGE_KINDS), options=STORAGE_KINDS),
             "Where the registry keeps images: `filesystem` (`registry_data_dir` on its one server) or `s3` "
             "(a bucket every replica in `registry_servers` shares: Ceph RGW, MinIO, AWS S3).", shared=True),
    Variable("registry_s3_endpoint", "",
             Text("an http(s):// URL, or empty", pattern=f"|{HTTP_URL}", refusal="must be an http(s):// URL", strip="/"),
             "The S3 service's URL (`http://rgw.example.com:7480`). Empty: AWS S3 in `registry_s3_region`.",
             shared=True),
    Variable("registry_s3_region", "us-east-1", Text("a region name", pattern=r"[A-Za-z0-9-]+",
                                                     refusal="is not a region name"),
             "The bucket's region (Ceph and MinIO accept any; `us-east-1` is their default).", shared=True),
    Variable("registry_s3_bucket", "", Text("a bucket name, or empty", pattern=r"|[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
                                            refusal="is not an S3 bucket name (3-63 of a-z 0-9 . -)"),
             "The bucket (it must exist; regdeploy does not create or empty buckets).", shared=True),
    Variable("registry_s3_access_key", "", Text("an access key id, or empty", pattern=r"|[A-Za-z0-9+/=_.-]+",
                                                refusal="is not an access key id"),
             "The S3 access key id. Its secret never goes in the inventory: `REGDEPLOY_S3_SECRET` in the "
             "environment, else the first line of `registry_s3_secret_file`.", shared=True),
    Variable("registry_s3_secret_file", ".regdeploy/s3-secret", Kind("a file on the controller"),
             "Untracked file (mode 0600) whose first line is the S3 secret key; the environment wins.", shared=True),
    Variable("registry_http_secret_file", ".regdeploy/http-secret", Kind("a file on the controller"),
             "With several replicas: untracked file (mode 0600) whose first line is the `http.secret` they "
             "share (an upload begun on one replica goes on on another); `REGDEPLOY_HTTP_SECRET` wins. Make "
             "one with `openssl rand -hex 32`.", shared=True),
    Variable("registry_lb_stats_port", 8404, Integer("1..65535", low=1, high=65535),
             "Port of haproxy's read-only status page on the `registry_lb` host: a replica being replaced "
             "waits there until the load balancer sends it requests again before the next one goes.", shared=True),
    Variable("registry_lb_vip", "", Text("an IPv4 address, optionally /prefix, or empty", pattern=IPV4_CIDR,
                                         refusal="is not an IPv4 address; set it to a free address on the "
                                                 "load balancers' network (e.g. 10.0.0.100 or 10.0.0.100/24)"),
             "Address the `registry_lb` hosts share (keepalived, VRRP with unicast peers): one holds it, another "
             "takes it within seconds when that one dies or its haproxy stops. Required with two or more load "
             "balancers; `registry_host` defaults to it. Without a prefix: /32.", shared=True),
    Variable("registry_lb_mode", "haproxy", Choice(", ".join(LB_MODES), options=LB_MODES),
             "How the `registry_lb` hosts spread requests over several replicas. haproxy: every request goes "
             "through haproxy, which resends a read a dead replica left unanswered; the requests in flight on "
             "a load balancer that dies are lost. ipvs: the kernel's IPVS forwards each connection to a "
             "replica, which answers the client itself (direct routing); every load balancer picks the same "
             "replica for a connection and keepalived copies each to the others, so the death of the one "
             "holding `registry_lb_vip` costs no connection, and the requests in flight on a replica that "
             "dies are lost. ipvs needs `registry_lb_vip` on the replicas' own network (each replica holds it "
             "on its loopback, without answering ARP for it) and a kernel with IPVS on the load balancers.",
             shared=True),
    Variable("registry_lb_vrid", 51, Integer("1..255", low=1, high=255),
             "VRRP virtual router id of `registry_lb_vip`: unique among the VRRP routers of that network.",
             shared=True),
    Variable("registry_lb_cache", True, Flag("true or false"),
             "With several replicas: a blob-descriptor cache they share, so a layer's lookup skips the bucket. "
             "Redis from the distribution runs on every `registry_lb` host; the replicas reach it at "
             "`registry_lb_vip` (without one, or with `registry_lb_mode` ipvs, at the first load balancer). It is emptied when a load balancer takes the "
             "address and after every `regdeploy gc` or `prune`. Its password derives from "
             "`registry_http_secret_file`. A cache that stops answering costs speed, not pulls.", shared=True),
    Variable("registry_seed_images", [], ListOf("list of image references", item=ImageReference("")),
             "Images the registry must hold after a deploy: pulled on the server, pushed to it."),
    Variable("registry_seed_archives", [], ListOf("list of paths on the controller", item=Kind("")),
             "`docker save` tarballs on the controller whose images are pushed (air-gapped seeding)."),
    Variable("docker_install_source", "distro", Choice(", ".join(INSTALL_SOURCES), options=INSTALL_SOURCES),
             "How Docker is installed: distro (Debian/Ubuntu docker.io), docker-ce (Docker's apt "
             "repository), none (already installed)."),
    Variable("docker_ce_repo_url", "https://download.docker.com/linux",
             Text("an http(s):// URL", pattern=HTTP_URL, refusal="must be an http(s):// URL", strip="/"),
             "Base URL of Docker's apt repository (set it to a mirror); `/debian` or `/ubuntu` is appended."),
    Variable("client_runtimes", [], ListOf("list of docker, containerd, podman; empty: detect",
                                           item=Choice("", options=RUNTIMES)),
             "Runtimes on the host to make trust the registry. Empty: Docker (unless "
             "`docker_install_source` is none and none is installed), containerd on hosts without Docker, "
             "Podman where installed. A host that pulls with containerd or Podman only needs "
             "`docker_install_source: none`."),
    Variable("docker_daemon_json", "/etc/docker/daemon.json", AbsolutePath("an absolute path"),
             "Path of the Docker daemon configuration."),
    Variable("registry_tls", False, Flag("true or false"),
             "Serve HTTPS. Without `registry_tls_cert`, regdeploy makes a CA and the server certificate on "
             "the controller (in `registry_tls_dir`); every host trusts the CA in "
             "`/etc/docker/certs.d/<registry>/ca.crt` and drops the registry from `insecure-registries`.", shared=True),
    Variable("registry_tls_dir", ".regdeploy/tls", Kind("a directory on the controller"),
             "Where the generated CA and server certificate live (relative to where pyinfra runs; keys 0600, "
             "a `.gitignore` inside keeps them out of git). The CA is reused; the certificate is re-issued "
             "when its names change or 30 days before it expires.", shared=True),
    Variable("registry_tls_names", [], ListOf("list of host names or IP addresses", item=Text("", pattern=HOST_NAME),
                                              item_refusal="is not a host name or IP address"),
             "Names the generated certificate covers besides `registry_host`, the server's inventory name and "
             "its SSH address (e.g. a DNS alias).", shared=True),
    Variable("registry_tls_cert", "", Kind("a path on the controller, or empty"),
             "Your own server certificate (PEM, chain after it) instead of a generated one; with "
             "`registry_tls_key` and `registry_tls_ca`.", shared=True),
    Variable("registry_tls_key", "", Kind("a path on the controller, or empty"),
             "The private key of `registry_tls_cert` (PEM).", shared=True),
    Variable("registry_tls_ca", "", Kind("a path on the controller, or empty"),
             "The CA certificate clients verify `registry_tls_cert` with (PEM).", shared=True),
    Variable("registry_auth", False, Flag("true or false"),
             "Require a user name and password (htpasswd, bcrypt) for every push and pull. Needs "
             "`registry_tls`: Docker would otherwise send the passwords in clear.", shared=True),
    Variable("registry_users", [], ListOf("list of user names", item=Text("", pattern=USER_NAME),
                                          item_refusal="is not a user name (letters, digits, . _ @ -)"),
             "Accounts of the registry. Passwords never go in the inventory: "
             "`REGDEPLOY_PASSWORD_<USER>` in the environment, else a `user:password` line in "
             "`registry_password_file`.", shared=True),
    Variable("registry_password_file", ".regdeploy/passwords", Kind("a file on the controller"),
             "Untracked `user:password` lines (mode 0600) for `registry_users`; the environment wins.", shared=True),
    Variable("registry_login_user", "", Text("one of registry_users, or empty", pattern=f"|{USER_NAME}",
                                             refusal="is not a user name"),
             "The account this host's runtimes log in as (Docker: root's ~/.docker/config.json; containerd, "
             "Podman: their own files) and, on the server, regdeploy's own scripts use. Per host with "
             "`registry_access`: clients pull as one account, build hosts push as another. Empty: the first "
             "of `registry_users`."),
    Variable("registry_access", [],
             ListOf("list of 'ACCOUNT PATTERN ACTIONS' rules (`;` between rules in --data)",
                    item=Text("", pattern=r"\S+\s+\S+\s+\S+"), separator=";",
                    item_refusal="is not 'ACCOUNT PATTERN ACTIONS' (e.g. 'robot-a team-a/* pull,push')"),
             "Who may do what, with `registry_auth`: each rule gives ACCOUNT (one of `registry_users`, or "
             "`anonymous` for requests without credentials) the ACTIONS (pull, push, delete; comma-separated) "
             "on the repositories matching PATTERN (`*` matches anything, `/` included: `team-a/*`). An "
             "account gets the union of its rules; /v2/_catalog is for accounts that may pull `*`. Empty: every "
             "account may do everything (htpasswd). Set: distribution's token authentication, with regdeploy's "
             "token service on every registry server. The server's `registry_login_user` needs pull,push on `*`.",
             shared=True),
    Variable("registry_token_port", 5002, Integer("1..65535", low=1, high=65535),
             "With `registry_access`: the HTTPS port of the token service clients get their tokens from, on "
             "`registry_host` (the server, or the load balancer in front of the replicas).", shared=True),
    Variable("registry_docker_login", True, Flag("true or false"),
             "With `registry_auth`: log every host's Docker and Podman (root) in as its `registry_login_user`, and give "
             "containerd's CRI plugin the same credentials (in config.toml)."),
    Variable("registry_login_local_users", [],
             ListOf("list of local user names",
                    item=Text("", pattern=r"[a-z_][a-z0-9_-]{0,31}"),
                    item_refusal="is not a local user name (e.g. 'builder')"),
             "With `registry_auth` and `registry_docker_login`, on a Docker host: local users besides root whose "
             "Docker logs in too, as this host's `registry_login_user`, into their own `~/.docker/config.json` "
             "(written as them). Each must exist and be in the `docker` group, or the login stops on that host "
             "naming the user. A user taken out of the list keeps their login: `docker logout` as them."),
    Variable("registry_allow_delete", False, Flag("true or false"),
             "Enable the registry's DELETE API (`storage.delete.enabled`). Off: nobody can delete images "
             "through the API (garbage collection does not need it)."),
    Variable("registry_retention", [],
             ListOf("list of 'PATTERN [keep=N] [within=DURATION] [pulled=DURATION] [protect=GLOB,...]' rules "
                    "(`;` between rules in --data)", item=Text("", pattern=r"\S+(\s+\S+)*"), separator=";"),
             "What `regdeploy prune` deletes: each repository follows the first rule whose PATTERN matches it "
             "(`*` matches anything, `/` included); under it a tag stays when it matches a `protect` glob, is "
             "one of the `keep` newest by push time, was pushed `within` (30d, 12h, 2w, 90m), or it or its "
             "manifest was pulled within `pulled`, as the registry's access log says (every replica's; when a "
             "log does not reach back that far, every tag under the rule stays). Every other tag "
             "goes, and a manifest with its last tag unless a tag or an image index that stays refers to it. "
             "A repository no rule matches is never touched; empty (the default): prune deletes nothing. With "
             "`registry_gc_schedule`, the scheduled collection prunes by these rules first.",
             shared=True),
    Variable("registry_gc_schedule", "",
             Text("a systemd OnCalendar expression, or empty", pattern=r"|[A-Za-z0-9*:,./~ -]+",
                  refusal="is not a systemd calendar expression (e.g. 'Sun *-*-* 03:00')"),
             "Run `regdeploy gc`'s collection on the server on this schedule (a systemd timer, checked by "
             "`systemd-analyze calendar` before anything is written). Empty: never (the timer is removed)."),
    # regdeploy's groups: only their hosts are touched, every other inventory host is left alone.
    Variable("registry_servers_group", "registry_servers", GROUP_NAME,
             "The inventory group whose hosts run the registry (one server, or replicas on shared storage). "
             "Set it for every host (group_data/all.py) where an estate names its groups otherwise."),
    Variable("docker_clients_group", "docker_clients", GROUP_NAME,
             "The inventory group whose hosts push to and pull from the registry (every host, the same)."),
    Variable("registry_lb_group", "registry_lb", GROUP_NAME,
             "The inventory group of the load balancer in front of several replicas (every host, the same)."),
    Variable("host_caches", True, Flag("true or false"),
             "Keep dpkg's answer and the result of the search for `--insecure-registry` on dockerd's command "
             "line in /var/cache/regdeploy between runs, each used only while what it was read from is "
             "unchanged. false: ask dpkg and search every run (a slower no-op, the same answers)."),
    Variable("deploy_lock_timeout", 600, Integer("0..86400", low=0, high=86400),
             "Seconds a deploy waits for another deploy (or `regdeploy backup`) on the same host to end "
             "before it stops, naming the holder."),
)

DEFAULTS: dict[str, Any] = {v.name: v.default for v in VARIABLES}


def markdown_table() -> str:
    def show(value: Any) -> str:
        if value == "":
            return "(empty)"
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        return f"`{value}`" if not isinstance(value, list) else f"`{value!r}`"

    rows = ["| variable | default | accepts | meaning |", "| --- | --- | --- | --- |"]
    rows += [f"| `{v.name}` | {show(v.default)} | {v.kind.accepts} | {v.help} |" for v in VARIABLES]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())

"""Where the lab keeps its state and what it names things: the one place for the lab's constants."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Label on every container, network and volume the lab creates, so `down` removes exactly those.
LAB_LABEL = "regdeploy.lab"

# Debian releases a lab host can run; bookworm is the default host, the server's, and the source of
# the stand-in images. trixie has Docker 26, containerd 1.7, Podman 5.4; sid Docker 28, containerd 2.1,
# Podman 5.8.
SUITES = ("bookworm", "trixie", "sid")
DEBIAN_SUITE = "bookworm"


def host_image(suite: str) -> str:
    return f"regdeploy-lab-host:{suite}"


def base_image(suite: str) -> str:
    return f"regdeploy-lab-base:{suite}"


HOST_IMAGE = host_image(DEBIAN_SUITE)
APT_SOURCES = Path("/etc/apt")


def mirror_from_apt_sources(root: Path = APT_SOURCES, suite: str = DEBIAN_SUITE) -> str | None:
    """The Debian mirror this controller's own apt uses for `suite` (deb822 .sources files and
    one-line .list files), so the lab builds from whatever mirror this machine is allowed to reach."""
    candidates: list[tuple[list[str], list[str]]] = []  # (URIs, suites) per entry
    for path in sorted(root.glob("sources.list.d/*.sources")):
        for stanza in path.read_text(errors="replace").split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith(("#", " ")):
                    fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
                candidates.append((fields.get("uris", []), fields.get("suites", [])))
    for path in [root / "sources.list", *sorted(root.glob("sources.list.d/*.list"))]:
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                words = [w for w in line.split("#", 1)[0].split() if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb":
                    candidates.append(([words[1]], [words[2]]))
    for uris, suites in candidates:
        if suite in suites and uris:
            return uris[0].rstrip("/")
    return None


# $REGDEPLOY_LAB_MIRROR, else the controller's own mirror for DEBIAN_SUITE, else Debian's default.
DEBIAN_MIRROR = (os.environ.get("REGDEPLOY_LAB_MIRROR") or mirror_from_apt_sources()
                 or "http://deb.debian.org/debian")

# Packages every lab host gets, so it looks like a freshly installed minimal server.
HOST_PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2",
    "ca-certificates", "curl", "procps", "iputils-ping", "gnupg",
]
# The lab's S3 store (registry_storage=s3): a one-node Ceph with its RADOS gateway, from Debian.
CEPH_PACKAGES = ["ceph-mon", "ceph-osd", "radosgw", "ceph-common"]
# Downloaded (not installed) into each host's apt cache at image build time: every host then
# installs Docker (or the runtime it plays) without fetching it from the mirror, N hosts never
# download it N times. From trixie on, docker.io only recommends the `docker` command (docker-cli).
# apparmor: what a host whose kernel enforces AppArmor (the VM tier's) also gets with Docker.
# bookworm also precaches haproxy and keepalived (the registry_lb hosts) and the lab's one-node Ceph
# (the store host).
PRECACHED_PACKAGES = {
    "bookworm": ["docker.io", "apparmor", "haproxy", "keepalived", *CEPH_PACKAGES],
    "trixie": ["docker.io", "docker-cli", "containerd", "podman", "apparmor"],
    "sid": ["docker.io", "docker-cli", "containerd", "podman", "apparmor"],
}

# What a lab host is before regdeploy first runs, besides its release:
# - docker: a plain Debian host (regdeploy installs Docker);
# - containerd-store: the same, with daemon.json asking for Docker's containerd image store, as a
#   new Docker 29 install has it (set before Docker is installed, so Docker starts with it);
# - containerd: containerd installed and running, no Docker (a Kubernetes or CI node);
# - podman: Podman installed, no Docker.
# - ceph: the store of a lab with replicas (not in the inventory): Ceph with RGW, a bucket, a key.
ROLES = ("docker", "containerd-store", "containerd", "podman", "ceph")
# Roles whose hosts get no Docker from regdeploy (docker_install_source=none in the lab inventory).
WITHOUT_DOCKER = ("containerd", "podman")


@dataclass(frozen=True)
class HostSpec:
    """One lab host's release and role, written `suite[:role]` (e.g. `sid:containerd-store`)."""

    suite: str = DEBIAN_SUITE
    role: str = "docker"

    @classmethod
    def parse(cls, text: str) -> "HostSpec":
        suite, _, role = text.strip().partition(":")
        spec = cls(suite or DEBIAN_SUITE, role or "docker")
        if spec.suite not in SUITES:
            raise ValueError(f"unknown release {spec.suite!r} in {text!r}: use one of {', '.join(SUITES)}")
        if spec.role not in ROLES:
            raise ValueError(f"unknown role {spec.role!r} in {text!r}: use one of {', '.join(ROLES)}")
        if spec.role == "ceph" and spec.suite != "bookworm":
            raise ValueError(f"{text!r}: the lab precaches Ceph for bookworm only")
        if spec.role in WITHOUT_DOCKER and spec.suite == "bookworm":
            raise ValueError(f"{text!r}: the lab precaches containerd and Podman for trixie and sid only")
        return spec

    def __str__(self) -> str:
        return self.suite if self.role == "docker" else f"{self.suite}:{self.role}"


def host_specs(spec: str, count: int) -> list[HostSpec]:
    """Per-host specs for `count` hosts (server first) from `--os`: one entry for all, or one per host
    in order (hosts past the list's end: bookworm)."""
    entries = [HostSpec.parse(e) for e in spec.split(",") if e.strip()] if spec else []
    if len(entries) == 1:
        return entries * count
    return (entries + [HostSpec()] * count)[:count]

# The stand-in images the lab builds because Docker Hub is unreachable here.
REGISTRY_IMAGE = "registry:2"
# A STAND-IN with distribution v3's interface (config in /etc/distribution/config.yml): no v3 package
# exists in Debian, so it is the same distribution 2.8 binary as the registry:2 stand-in.
REGISTRY3_IMAGE = "registry:3"
REGISTRY3_ARCHIVE = "registry-3.tar"
TEST_IMAGE = "busybox:latest"


@dataclass(frozen=True)
class Lab:
    """One lab: a name that prefixes everything it creates, and a state directory on the controller."""

    name: str = "regdeploy-lab"
    subnet_prefix: str = "172.29.57"

    @property
    def state_dir(self) -> Path:
        return REPO_ROOT / ".lab" / self.name

    @property
    def images_dir(self) -> Path:
        # Images and the debootstrap cache are shared by every lab on this controller.
        return REPO_ROOT / ".lab" / "images"

    def rootfs(self, suite: str = DEBIAN_SUITE) -> Path:
        """The debootstrapped tree a host image is made from (bookworm's also holds the stand-ins' packages)."""
        return self.images_dir / ("rootfs" if suite == DEBIAN_SUITE else f"rootfs-{suite}")

    @property
    def network(self) -> str:
        return self.name

    @property
    def subnet(self) -> str:
        return f"{self.subnet_prefix}.0/24"

    @property
    def s3_secret_path(self) -> Path:
        """The store's S3 secret key (a lab with replicas), 0600: the inventory names the file."""
        return self.state_dir / "s3-secret"

    @property
    def http_secret_path(self) -> Path:
        return self.state_dir / "http-secret"

    @property
    def ssh_key(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def inventory_path(self) -> Path:
        return self.state_dir / "inventory.py"

    @property
    def hosts_path(self) -> Path:
        return self.state_dir / "hosts"

    @property
    def ssh_config_path(self) -> Path:
        return self.state_dir / "ssh_config"

    @property
    def registry_archive(self) -> Path:
        return self.images_dir / "registry-2.tar"

    @property
    def registry3_archive(self) -> Path:
        return self.images_dir / REGISTRY3_ARCHIVE

    @property
    def test_image_archive(self) -> Path:
        return self.images_dir / "busybox.tar"

    def container_name(self, hostname: str) -> str:
        return f"{self.name}-{hostname}"

    def volume_name(self, hostname: str) -> str:
        return f"{self.name}-{hostname}-docker"

    def address(self, index: int) -> str:
        # .1 is the bridge gateway (the controller); the server is .10, clients .11 upwards.
        return f"{self.subnet_prefix}.{10 + index}"

    @property
    def vip(self) -> str:
        """A lab with replicas: the address its load balancers share (no host has it; hosts use .10 up
        to at most .220), and the name every host knows it by (VIP_NAME, in its /etc/hosts)."""
        return f"{self.subnet_prefix}.250"


DEFAULT_NAME = "regdeploy-lab"
# The test lab (`pytest` without --inventory), server first: the fleet as it really is — Debian 12
# with Docker 20.10, Debian 13 with Docker 26, sid with Docker 28 and the containerd image store, and
# hosts that pull with Podman and with containerd alone. The verify suite parametrizes over them.
TEST_LAB_OS = "bookworm,bookworm,trixie,sid:containerd-store,trixie:podman,sid:containerd"
TEST_LAB_CLIENTS = len(TEST_LAB_OS.split(",")) - 1


def default_lab(name: str | None = None) -> Lab:
    """The lab called `name` (default $REGDEPLOY_LAB or regdeploy-lab), on $REGDEPLOY_LAB_SUBNET or
    a /24 derived from its name, so labs with different names do not collide."""
    name = name or os.environ.get("REGDEPLOY_LAB", DEFAULT_NAME)
    subnet = os.environ.get("REGDEPLOY_LAB_SUBNET")
    if not subnet:
        third = 57 if name == DEFAULT_NAME else 100 + zlib.crc32(name.encode()) % 150
        subnet = f"172.29.{third}"
    return Lab(name=name, subnet_prefix=subnet)


# A lab with replicas: two load balancers sharing the lab's vip, which every host knows as VIP_NAME.
LB_HOSTS = ("lb1", "lb2")
VIP_NAME = "registry"
STORE_HOST = "store"
STORE_BUCKET = "registry"
STORE_PORT = 7480  # radosgw's beast frontend
STORE_ACCESS_KEY = "REGDEPLOYLAB"  # its secret key: Lab.s3_secret_path


def hostnames(clients: int, replicas: int = 0) -> list[str]:
    """The lab's hosts in address order: `registry` and the clients; with `replicas`, registry1..N on
    the lab's S3 store, the load balancers and the store itself before the clients."""
    servers = (["registry"] if not replicas
               else [f"registry{i}" for i in range(1, replicas + 1)] + [*LB_HOSTS, STORE_HOST])
    return servers + [f"client{i}" for i in range(1, clients + 1)]


def host_order(hostname: str) -> tuple:
    """Sort key giving hostnames()'s order."""
    role = 0 if hostname.startswith("registry") else 1 if hostname in LB_HOSTS else 2 if hostname == STORE_HOST else 3
    return role, len(hostname), hostname

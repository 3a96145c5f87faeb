"""Where the lab keeps its state and what it names things: the one place for the lab's constants."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Label on every container, network and volume the lab creates, so `down` removes exactly those.
LAB_LABEL = "regdeploy.lab"

HOST_IMAGE = "regdeploy-lab-host:bookworm"
BASE_IMAGE = "regdeploy-lab-base:bookworm"
DEBIAN_SUITE = "bookworm"
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
# Downloaded (not installed) into each host's apt cache at image build time: every host then
# installs Docker without fetching ~60 MB from the mirror, N hosts never download it N times.
PRECACHED_PACKAGES = ["docker.io"]

# The stand-in images the lab builds because Docker Hub is unreachable here.
REGISTRY_IMAGE = "registry:2"
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

    @property
    def network(self) -> str:
        return self.name

    @property
    def subnet(self) -> str:
        return f"{self.subnet_prefix}.0/24"

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
    def test_image_archive(self) -> Path:
        return self.images_dir / "busybox.tar"

    def container_name(self, hostname: str) -> str:
        return f"{self.name}-{hostname}"

    def volume_name(self, hostname: str) -> str:
        return f"{self.name}-{hostname}-docker"

    def address(self, index: int) -> str:
        # .1 is the bridge gateway (the controller); the server is .10, clients .11 upwards.
        return f"{self.subnet_prefix}.{10 + index}"


DEFAULT_NAME = "regdeploy-lab"
# Clients of the test lab (`pytest` without --inventory): the verify suite parametrizes over them.
TEST_LAB_CLIENTS = 2


def default_lab(name: str | None = None) -> Lab:
    """The lab called `name` (default $REGDEPLOY_LAB or regdeploy-lab), on $REGDEPLOY_LAB_SUBNET or
    a /24 derived from its name, so labs with different names do not collide."""
    name = name or os.environ.get("REGDEPLOY_LAB", DEFAULT_NAME)
    subnet = os.environ.get("REGDEPLOY_LAB_SUBNET")
    if not subnet:
        third = 57 if name == DEFAULT_NAME else 100 + zlib.crc32(name.encode()) % 150
        subnet = f"172.29.{third}"
    return Lab(name=name, subnet_prefix=subnet)


def hostnames(clients: int) -> list[str]:
    return ["registry"] + [f"client{i}" for i in range(1, clients + 1)]

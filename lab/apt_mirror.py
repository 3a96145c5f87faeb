"""A local apt repository laid out like Docker's, signed with a key the lab makes: the stand-in for
download.docker.com (unreachable here), so `docker_install_source=docker-ce` runs for real.

    <root>/linux/debian/gpg                                    the signing key, ASCII-armored
    <root>/linux/debian/dists/<codename>/{Release,InRelease,Release.gpg}
    <root>/linux/debian/dists/<codename>/stable/binary-amd64/Packages{,.gz}
    <root>/linux/debian/pool/stable/*.deb

Its packages are STAND-INS: `docker-ce` is Debian's `docker.io` repackaged under Docker's name (its
files, dependencies and maintainer scripts; it conflicts with and replaces docker.io, as Debian's
docker.io conflicts with Docker's docker-ce); `docker-ce-cli` and `containerd.io` are empty
metapackages that depend on `docker-ce` and Debian's `containerd`. What this proves is regdeploy's path through
Docker's repository (key fetched and dearmored into /etc/apt/keyrings, deb822 source with
signed-by, apt verifying the signature, the packages installed by those names, Docker running);
it does not prove anything about Docker Inc.'s own binaries.

`wrong_key=True` builds the same repository with its Release signed by another key than the one
it publishes at `gpg`: apt must refuse it.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .log import step

CODENAMES = ("bookworm",)  # every Debian release the lab builds



def stand_in_version(docker_io_deb: Path) -> str:
    """Docker's version scheme (epoch 5) around the upstream version of the docker.io it repackages,
    so what reads the version (regdeploy's `dockerd --validate` decision) sees the real one."""
    version = subprocess.run(["dpkg-deb", "-f", str(docker_io_deb), "Version"], check=True, capture_output=True,
                             text=True).stdout.strip()
    return f"5:{version.split('+')[0].split('-')[0]}-1~regdeploy.lab"
METAPACKAGES = {
    "docker-ce-cli": "docker-ce",  # Debian's docker.io, hence docker-ce here, carries the CLI
    "containerd.io": "containerd",
}


def _gpg(home: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--quiet", *args], check=True, **kwargs)


def _make_key(home: Path, who: str) -> str:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    _gpg(home, "--passphrase", "", "--quick-gen-key", f"{who} <lab@regdeploy.invalid>", "ed25519", "sign", "never")
    listing = _gpg(home, "--with-colons", "--list-keys", capture_output=True, text=True).stdout
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


def _build_deb(name: str, version: str, depends: str, into: Path) -> Path:
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "DEBIAN").mkdir()
        (Path(work) / "DEBIAN/control").write_text(
            f"Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: regdeploy lab <lab@regdeploy.invalid>\n"
            f"Depends: {depends}\nSection: admin\nPriority: optional\n"
            f"Description: regdeploy lab stand-in for Docker's {name}\n"
            f" An empty metapackage that installs {depends}: NOT Docker Inc.'s package.\n")
        deb = into / f"{name}_{version.split(':')[1]}_amd64.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "--build", work, str(deb)], check=True,
                       stdout=subprocess.DEVNULL)
    return deb


def _repackage_docker_io(docker_io_deb: Path, version: str, into: Path) -> Path:
    """Debian's docker.io under Docker's package name and an epoch-5 version, as Docker's own would be."""
    with tempfile.TemporaryDirectory() as work:
        tree = Path(work, "tree")
        subprocess.run(["dpkg-deb", "-R", str(docker_io_deb), str(tree)], check=True)
        fields, current = {}, None
        for line in (tree / "DEBIAN/control").read_text().splitlines():
            if line.startswith((" ", "\t")) and current:
                fields[current] += "\n" + line
            else:
                current, _, value = line.partition(":")
                fields[current] = value.strip()
        fields.pop("Built-Using", None)
        fields.update({"Package": "docker-ce", "Version": version, "Conflicts": "docker.io", "Replaces": "docker.io",
                       "Maintainer": "regdeploy lab <lab@regdeploy.invalid>",
                       "Description": "regdeploy lab stand-in for Docker's docker-ce\n"
                                      " Debian's docker.io repackaged under Docker's name: NOT Docker Inc.'s package."})
        (tree / "DEBIAN/control").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
        deb = into / f"docker-ce_{version.split(':')[1]}_amd64.deb"
        # gzip -1: the 150 MB of binaries pack in seconds (xz takes over a minute on 2 cores).
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(tree), str(deb)], check=True,
                       stdout=subprocess.DEVNULL)
    return deb


def _packages_index(debs: list[Path], repo: Path) -> str:
    stanzas = []
    for deb in debs:
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True).stdout
        data = deb.read_bytes()
        stanzas.append(control.rstrip("\n") + f"\nFilename: {deb.relative_to(repo)}\nSize: {len(data)}\n"
                       f"MD5sum: {hashlib.md5(data).hexdigest()}\nSHA256: {hashlib.sha256(data).hexdigest()}\n")
    return "\n".join(stanzas)


def _release(codename: str, files: dict[str, bytes]) -> str:
    lines = ["Origin: regdeploy lab (stand-in for Docker)", "Label: Docker CE stand-in", f"Suite: {codename}",
             f"Codename: {codename}", "Architectures: amd64", "Components: stable",
             "Description: regdeploy lab stand-in for Docker's apt repository",
             f"Date: {email.utils.formatdate(usegmt=True)}", "SHA256:"]
    lines += [f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}" for name, data in sorted(files.items())]
    return "\n".join(lines) + "\n"


def build(root: Path, docker_io_deb: Path, wrong_key: bool = False, packages_from: Path | None = None) -> str:
    """Build the repository under `root` (replacing it) from Debian's docker.io package file, or
    with the package files of the repository at `packages_from` (hard links); returns the
    fingerprint of the key it publishes at `gpg`."""
    if root.exists():
        shutil.rmtree(root)
    repo = root / "linux" / "debian"
    pool = repo / "pool" / "stable"
    pool.mkdir(parents=True)
    with step(f"build the signed docker-ce stand-in repository in {root}"), tempfile.TemporaryDirectory() as work:
        published = Path(work, "published")
        fingerprint = _make_key(published, "regdeploy lab docker-ce mirror")
        signer = published
        if wrong_key:
            signer = Path(work, "other")
            _make_key(signer, "some other key")
        (repo / "gpg").write_bytes(_gpg(published, "--armor", "--export", fingerprint, capture_output=True).stdout)
        if packages_from:
            debs = []
            for deb in sorted((packages_from / "linux/debian/pool/stable").glob("*.deb")):
                os.link(deb, pool / deb.name)
                debs.append(pool / deb.name)
        else:
            version = stand_in_version(docker_io_deb)
            debs = [_repackage_docker_io(docker_io_deb, version, pool)]
            debs += [_build_deb(name, version, depends, pool) for name, depends in METAPACKAGES.items()]
        index = _packages_index(debs, repo).encode()
        for codename in CODENAMES:
            dist = repo / "dists" / codename
            binary = dist / "stable" / "binary-amd64"
            binary.mkdir(parents=True)
            (binary / "Packages").write_bytes(index)
            (binary / "Packages.gz").write_bytes(gzip.compress(index, mtime=0))
            release = _release(codename, {"stable/binary-amd64/Packages": index,
                                          "stable/binary-amd64/Packages.gz": gzip.compress(index, mtime=0)})
            (dist / "Release").write_text(release)
            _gpg(signer, "--yes", "--clearsign", "-o", str(dist / "InRelease"), str(dist / "Release"))
            _gpg(signer, "--yes", "--armor", "--detach-sign", "-o", str(dist / "Release.gpg"), str(dist / "Release"))
        for home in {published, signer}:
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    os.chmod(root, 0o755)
    return fingerprint

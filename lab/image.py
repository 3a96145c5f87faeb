"""Build the lab's images: the Debian host image (debootstrap) and the two stand-in images
(registry:2 from Debian's docker-registry package, busybox from busybox-static).

Docker Hub is unreachable here, so nothing is pulled: everything comes from Debian's mirror.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from regdeploy.registry_plan import CONTAINER_PORT, STORAGE_TARGET
from regdeploy.rendering import render

from . import config
from .docker import docker, image_exists
from .log import step

# Runs inside the debootstrapped tree (chroot) to turn it into a host that boots like a server.
HOST_SETUP_SCRIPT = r"""
set -eu
# Host keys are generated at first boot, so no two lab hosts (or rebuilds) share them.
rm -f /etc/ssh/ssh_host_*
cat > /etc/systemd/system/ssh-host-keys.service <<'UNIT'
[Unit]
Description=Generate SSH host keys on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/ssh-host-keys.service \
    /etc/systemd/system/multi-user.target.wants/ssh-host-keys.service
mkdir -p /root/.ssh && chmod 700 /root/.ssh
sed -i 's/^#\?PermitRootLogin.*/PermitRootLogin prohibit-password/' /etc/ssh/sshd_config
sed -i 's/^#\?UseDNS.*/UseDNS no/' /etc/ssh/sshd_config
# Consoles do not exist in a container; apt timers grab the dpkg lock in the middle of a deploy.
for unit in getty@tty1.service serial-getty@console.service console-getty.service \
            apt-daily.timer apt-daily-upgrade.timer systemd-timesyncd.service systemd-modules-load.service; do
    ln -sf /dev/null /etc/systemd/system/$unit
done
# Every boot gets a fresh machine id, like a cloned VM image.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
echo 'APT::Install-Recommends "false";' > /etc/apt/apt.conf.d/90-lab-no-recommends
# sid's Release on the mirror may be past its Valid-Until date; the lab trusts its signature alone.
if [ "{suite}" = sid ]; then echo 'Acquire::Check-Valid-Until "false";' > /etc/apt/apt.conf.d/90-lab-valid-until; fi
# systemd 258 and newer refuse a tmpfs /sys/fs/cgroup: lab-init mounts cgroup2 there (the host's own,
# private cgroup namespace) and hands over to systemd.
cat > /usr/local/sbin/lab-init <<'INIT'
#!/bin/sh
mount -t cgroup2 cgroup2 /sys/fs/cgroup || exit 1
exec /sbin/init "$@"
INIT
chmod 755 /usr/local/sbin/lab-init
apt-get clean
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -q -y --download-only {precached}
if [ "{suite}" = bookworm ]; then
    mkdir -p /lab-downloads && cd /lab-downloads && chown _apt /lab-downloads \
        && apt-get download -q docker-registry busybox-static
fi
"""

# systemd up to 257 (bookworm, trixie) boots on the tmpfs /sys/fs/cgroup hosts.py gives it; newer
# ones (sid) boot through lab-init.
CGROUP2_SUITES = ("sid",)


def host_dockerfile(suite: str) -> str:
    init = "/usr/local/sbin/lab-init" if suite in CGROUP2_SUITES else "/sbin/init"
    return f"""FROM {config.base_image(suite)}
STOPSIGNAL SIGRTMIN+3
CMD ["{init}"]
"""


def build_all(lab: config.Lab, rebuild: bool = False, suites: tuple[str, ...] = (config.DEBIAN_SUITE,)) -> None:
    """Make sure the host images of `suites` and both stand-in archives exist (build what is missing).
    The stand-ins come from bookworm's tree, whatever the hosts run."""
    lab.images_dir.mkdir(parents=True, exist_ok=True)
    need_archives = rebuild or not (lab.registry_archive.exists() and lab.registry3_archive.exists()
                                    and lab.test_image_archive.exists())
    plans = []  # (suite, build its host image?, build the stand-ins from it?)
    for suite in dict.fromkeys((config.DEBIAN_SUITE,) + tuple(suites)):
        need_host = (rebuild or not image_exists(config.host_image(suite))) and suite in suites
        stand_ins = need_archives and suite == config.DEBIAN_SUITE
        if need_host or stand_ins:
            plans.append((suite, need_host, stand_ins))
    trees = [suite for suite, _, stand_ins in plans
             if rebuild or not (lab.rootfs(suite) / "var/lib/dpkg/status").is_file()
             or (stand_ins and not (lab.rootfs(suite) / "lab-downloads").is_dir())]
    # The releases' trees are independent, and debootstrap mostly waits on the mirror: all at once.
    with ThreadPoolExecutor(max_workers=len(trees) or 1) as pool:
        list(pool.map(lambda suite: _debootstrap(lab.rootfs(suite), suite), trees))
    for suite, need_host, stand_ins in plans:
        if need_host:
            _import_host_image(lab.rootfs(suite), suite)
        if stand_ins:
            _build_registry_image(lab.rootfs(suite), lab.registry_archive)
            _build_test_image(lab.rootfs(suite), lab.test_image_archive)


def _debootstrap(rootfs: Path, suite: str) -> None:
    if shutil.which("debootstrap") is None:
        raise SystemExit("debootstrap is not installed: run lab/bootstrap.sh (apt-get install debootstrap)")
    if rootfs.exists():
        shutil.rmtree(rootfs)
    with step(f"debootstrap {suite} into {rootfs}"):
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=" + ",".join(config.HOST_PACKAGES),
             suite, str(rootfs), config.DEBIAN_MIRROR],
            check=True, stdout=subprocess.DEVNULL,
        )
    with step(f"configure the {suite} host tree (ssh, systemd units, apt cache)"):
        script = HOST_SETUP_SCRIPT.replace("{precached}", " ".join(config.PRECACHED_PACKAGES[suite]))
        script = script.replace("{suite}", suite)
        # resolv.conf from the controller so apt inside the chroot reaches the mirror.
        shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
        subprocess.run(["chroot", str(rootfs), "/bin/sh", "-c", script], check=True,
                       stdout=subprocess.DEVNULL)


def _import_host_image(rootfs: Path, suite: str) -> None:
    with step(f"import {config.host_image(suite)}"):
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--exclude=./lab-downloads", "--exclude=./etc/resolv.conf",
             "-c", "."],
            stdout=subprocess.PIPE,
        )
        docker("import", "--change", f"LABEL {config.LAB_LABEL}=image", "-", config.base_image(suite),
               stdin=tar.stdout)
        if tar.wait() != 0:
            raise SystemExit("tar of the host tree failed")
        with tempfile.TemporaryDirectory() as ctx:
            Path(ctx, "Dockerfile").write_text(host_dockerfile(suite))
            docker("build", "-q", "-t", config.host_image(suite), ctx)


def _extract_deb(rootfs: Path, package: str, into: Path) -> None:
    debs = sorted((rootfs / "lab-downloads").glob(f"{package}_*.deb"))
    if not debs:
        raise SystemExit(f"{package} was not downloaded into the image tree; rebuild with --rebuild")
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(into)], check=True)


def _copy_with_libraries(binary: Path, rootfs: Path, image_root: Path, dest: str) -> None:
    """Copy a binary into an image tree with the shared libraries it links (ldd inside the host tree)."""
    target = image_root / dest.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, target)
    inside = "/" + str(binary.relative_to(rootfs))
    out = subprocess.run(["chroot", str(rootfs), "ldd", inside], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            lib = image_root / path.lstrip("/")
            lib.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(rootfs / path.lstrip("/"), lib, follow_symlinks=True)


def _save(image: str, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_suffix(".tmp")
    docker("save", "-o", str(tmp), image)
    tmp.replace(archive)


def _import_tree(tree: Path, image: str, changes: list[str]) -> None:
    tar = subprocess.Popen(["tar", "-C", str(tree), "-c", "."], stdout=subprocess.PIPE)
    args = ["import"]
    for change in changes + [f"LABEL {config.LAB_LABEL}=stand-in"]:
        args += ["--change", change]
    docker(*args, "-", image, stdin=tar.stdout)
    if tar.wait() != 0:
        raise SystemExit(f"tar of the {image} tree failed")


# What the registry:3 stand-in serves when run as is (distribution v3's default, deletes enabled).
REGISTRY3_BUILT_IN_CONFIG = """version: 0.1
log:
  fields:
    service: registry
storage:
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
"""


def _build_registry_image(rootfs: Path, archive: Path) -> None:
    with step(f"build the {config.REGISTRY_IMAGE} and {config.REGISTRY3_IMAGE} stand-ins from Debian's docker-registry"), \
            tempfile.TemporaryDirectory() as work:
        extracted, tree = Path(work, "deb"), Path(work, "tree")
        _extract_deb(rootfs, "docker-registry", extracted)
        # Put the binary inside the host tree so ldd resolves against the same libraries.
        staged = rootfs / "tmp/docker-registry"
        shutil.copy2(extracted / "usr/bin/docker-registry", staged)
        try:
            _copy_with_libraries(staged, rootfs, tree, "/bin/registry")
        finally:
            staged.unlink()
        (tree / "var/lib/registry").mkdir(parents=True)
        (tree / "tmp").mkdir(mode=0o1777)
        shutil.copytree(rootfs / "etc/ssl/certs", tree / "etc/ssl/certs", symlinks=False,
                        ignore_dangling_symlinks=True)
        # The same interface as each official image: `registry serve <config>`, the config path as
        # CMD, a built-in config there (so the image also runs as is). registry:3 reads
        # /etc/distribution/config.yml: its built-in config differs from regdeploy's (deletes
        # enabled, no health check), so a test can tell which one is in effect.
        for image, archive_path, config_path, built_in in (
                (config.REGISTRY_IMAGE, archive, "/etc/docker/registry/config.yml",
                 render("registry-config.yml.j2", data_dir=STORAGE_TARGET, storage_target=STORAGE_TARGET,
                        container_port=CONTAINER_PORT)),
                (config.REGISTRY3_IMAGE, archive.with_name(config.REGISTRY3_ARCHIVE),
                 "/etc/distribution/config.yml", REGISTRY3_BUILT_IN_CONFIG)):
            for stale in ("etc/docker", "etc/distribution"):
                shutil.rmtree(tree / stale, ignore_errors=True)
            (tree / config_path.lstrip("/")).parent.mkdir(parents=True)
            (tree / config_path.lstrip("/")).write_text(built_in)
            _import_tree(tree, image, [
                'ENTRYPOINT ["/bin/registry", "serve"]',
                f'CMD ["{config_path}"]',
                "EXPOSE 5000",
                'VOLUME ["/var/lib/registry"]',
                f"LABEL {config.LAB_LABEL}.stand-in-for={image}",
            ])
            _save(image, archive_path)


def _build_test_image(rootfs: Path, archive: Path) -> None:
    with step(f"build the {config.TEST_IMAGE} test image from Debian's busybox-static"), \
            tempfile.TemporaryDirectory() as work:
        extracted, tree = Path(work, "deb"), Path(work, "tree")
        _extract_deb(rootfs, "busybox-static", extracted)
        (tree / "bin").mkdir(parents=True)
        shutil.copy2(extracted / "bin/busybox", tree / "bin/busybox")
        for applet in ("sh", "sleep", "true", "echo", "cat", "ls", "date", "id"):
            (tree / "bin" / applet).symlink_to("busybox")
        (tree / "tmp").mkdir(mode=0o1777)
        _import_tree(tree, config.TEST_IMAGE, ['CMD ["sh"]'])
        _save(config.TEST_IMAGE, archive)

"""Start, stop and reboot the lab's hosts: Debian containers with systemd as PID 1 and sshd."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import config, image, inventory, vm
from . import lb_vms as lb_vms_module
from .docker import container_hosts, docker, inspect, labelled, require_engine
from .log import step
from .roles import prepare_role
from .ssh import close_ssh_master, ensure_ssh_key, wait_for_ssh

LXCFS_UPTIME = Path("/var/lib/lxcfs/proc/uptime")
OWNER_LABEL = f"{config.LAB_LABEL}.state-dir"
# Every lab host runs systemd and its services, each holding inotify instances, all counted
# against root's limit (128 on Debian): past ~8 hosts new hosts boot without sshd.
INOTIFY_LIMITS = {"/proc/sys/fs/inotify/max_user_instances": 8192,
                  "/proc/sys/fs/inotify/max_user_watches": 1048576}

# What makes systemd boot in an unprivileged-enough container on this kind of machine:
# --privileged fails (CAP_SYS_RESOURCE is not in the bounding set), so take every other capability;
# systemd mounts its own cgroup hierarchy on a private tmpfs (never bind the controller's).
HOST_RUN_ARGS = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm",
    "--cgroupns", "private", "--tmpfs", "/sys/fs/cgroup",
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
]


def running_hosts(lab: config.Lab) -> list[str]:
    """Hostnames of this lab's hosts (VMs or containers), server first."""
    if vm.is_vm_lab(lab):
        return vm.running_hosts(lab)
    return sorted(container_hosts(lab) + lb_vms_module.running(lab), key=config.host_order)


SPEC_LABEL = f"{config.LAB_LABEL}.os"
# Image stores of the runtimes a role brings, each on a volume of its own.
STORES = {"podman": ("/var/lib/containers",), "containerd": ("/var/lib/containerd",),
          "containerd-store": ("/var/lib/containerd",)}


def up(lab: config.Lab, clients: int = 2, rebuild: bool = False, os_spec: str = "",
       vms: bool = False, replicas: int = 0, lb_vms: bool = False) -> list[str]:
    """Create the lab (or grow it to `clients` clients) and wait until every host answers SSH.

    `os_spec` gives each host's release and role (config.host_specs: `bookworm,trixie,sid:podman`...);
    a host that already runs keeps the one it was made with. `vms`: the hosts are virtual machines
    (lab/vm.py) instead of containers. `replicas`: that many registry servers on the lab's S3 store
    (a one-node Ceph, host `store`) behind two load balancers (hosts `lb1`, `lb2`); `lb_vms`: those two
    are VMs on the lab's network, for registry_lb_mode=ipvs (lab/lb_vms.py)."""
    require_engine()
    if replicas and (vms or os_spec):
        raise SystemExit("--replicas makes bookworm containers: leave out --vm and --os")
    if lb_vms and not replicas:
        raise SystemExit("--lb-vms needs --replicas: the load balancers are those of the replicas")
    if vms:
        return vm.up(lab, clients=clients, rebuild=rebuild, os_spec=os_spec)
    if vm.is_vm_lab(lab):
        raise SystemExit(f"lab {lab.name} runs as VMs: `python -m lab --name {lab.name} down` first, or add --vm")
    if not 0 <= clients <= 200:
        raise SystemExit("--clients must be between 0 and 200")
    wanted = config.hostnames(clients, replicas)
    try:
        specs = dict(zip(wanted, config.host_specs(os_spec, len(wanted))))
    except ValueError as exc:
        raise SystemExit(f"--os: {exc}") from None
    if replicas:
        specs[config.STORE_HOST] = config.HostSpec(role="ceph")
    existing = set(container_hosts(lab))
    if existing and (config.STORE_HOST in existing) != bool(replicas):
        raise SystemExit(f"lab {lab.name} was made {'with' if config.STORE_HOST in existing else 'without'} "
                         "replicas: `python -m lab down` first, or keep --replicas as it was")
    for hostname in existing & set(wanted):
        specs[hostname] = config.HostSpec.parse(
            docker("inspect", "-f", f'{{{{index .Config.Labels "{SPEC_LABEL}"}}}}', lab.container_name(hostname))
            or config.DEBIAN_SUITE)
    image.build_all(lab, rebuild=rebuild, suites=tuple(dict.fromkeys(s.suite for s in specs.values())))
    _raise_inotify_limits()
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_ssh_key(lab)
    _ensure_network(lab)
    _check_owner(lab, existing)
    new = [h for h in wanted if h not in existing]
    with step(f"start {len(wanted)} hosts"):
        for index, hostname in enumerate(wanted):
            if lb_vms and hostname in config.LB_HOSTS:
                continue
            if hostname in existing:
                docker("start", lab.container_name(hostname))
            else:
                _start_host(lab, hostname, index, specs[hostname],
                            # A lab with replicas: every host knows the load balancers' shared address.
                            extra_hosts={config.VIP_NAME: lab.vip} if replicas else {})
    if replicas:
        _ensure_secrets(lab)
    inventory.write(lab, wanted, specs, lb_mode="ipvs" if lb_vms else "")
    if lb_vms:
        lb_vms_module.up(lab, {h: wanted.index(h) for h in config.LB_HOSTS},
                         {config.VIP_NAME: lab.vip, **{h: lab.address(i) for i, h in enumerate(wanted)}})
    with step("wait for SSH on every host"):
        wait_for_ssh(lab, wanted)
    prepare = [h for h in new if specs[h].role != "docker"]
    if prepare:
        with step(f"make {', '.join(f'{h} ({specs[h]})' for h in prepare)} what they play"):
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda h: prepare_role(lab, h, specs[h]), prepare))
    return wanted


def _ensure_secrets(lab: config.Lab) -> None:
    """The store's S3 secret key and the replicas' http.secret: made once per lab, 0600."""
    for path in (lab.s3_secret_path, lab.http_secret_path):
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(20) + "\n")


def _check_owner(lab: config.Lab, existing: set[str]) -> None:
    """Lab names are global to the Docker engine; SSH keys live in one checkout. Refuse to adopt
    another checkout's hosts (their authorized key is not ours) rather than time out on SSH."""
    for hostname in existing:
        labels = (inspect("container", lab.container_name(hostname)) or {}).get("Config", {}).get("Labels") or {}
        owner = labels.get(OWNER_LABEL)
        if owner and owner != str(lab.state_dir):
            raise SystemExit(f"lab {lab.name} was started from {owner}: run `python -m lab down` there, "
                             "or pick another lab with --name")


def _raise_inotify_limits() -> None:
    for path, wanted in INOTIFY_LIMITS.items():
        try:
            if int(Path(path).read_text()) < wanted:
                Path(path).write_text(str(wanted))
        except OSError as exc:
            print(f"lab: cannot raise {path} to {wanted} ({exc}): large labs may boot without sshd",
                  file=sys.stderr)


def _ensure_network(lab: config.Lab) -> None:
    if inspect("network", lab.network) is None:
        docker("network", "create", "--subnet", lab.subnet,
               "--label", f"{config.LAB_LABEL}={lab.name}", lab.network)


def _start_host(lab: config.Lab, hostname: str, index: int, spec: config.HostSpec = config.HostSpec(),
                extra_hosts: dict[str, str] | None = None) -> None:
    volume = lab.volume_name(hostname)
    docker("volume", "create", "--label", f"{config.LAB_LABEL}={lab.name}", volume)
    # Podman's and containerd's stores need a real filesystem too (overlay does not stack on overlay).
    stores = {path: f"{volume}-{path.rsplit('/', 1)[1]}" for path in STORES.get(spec.role, ())}
    for name in stores.values():
        docker("volume", "create", "--label", f"{config.LAB_LABEL}={lab.name}", name)
    args = [
        "run", "-d", "--name", lab.container_name(hostname), "--hostname", hostname,
        "--label", f"{config.LAB_LABEL}={lab.name}", "--label", f"{OWNER_LABEL}={lab.state_dir}",
        "--label", f"{SPEC_LABEL}={spec}",
        "--network", lab.network, "--ip", lab.address(index), "--network-alias", hostname,
        *(arg for name, address in (extra_hosts or {}).items() for arg in ("--add-host", f"{name}:{address}")),
        *HOST_RUN_ARGS,
        # Docker inside the host needs a real filesystem (not overlay on overlay) for overlay2.
        "-v", f"{volume}:/var/lib/docker",
        *(arg for path, name in stores.items() for arg in ("-v", f"{name}:{path}")),
        "-v", f"{lab.ssh_key}.pub:/root/.ssh/authorized_keys:ro",
    ]
    if LXCFS_UPTIME.exists():
        # A container sees the machine's uptime; lxcfs gives it its own, so `reboot` is observable.
        args += ["-v", f"{LXCFS_UPTIME}:/proc/uptime:ro"]
    docker(*args, config.host_image(spec.suite))


def reboot(lab: config.Lab, hostname: str) -> None:
    """Restart one host like a machine reboot: processes end, its volume and containers stay (a VM
    really reboots)."""
    if vm.is_vm_lab(lab):
        vm.reboot(lab, hostname)
        return
    docker("restart", "--time", "20", lab.container_name(hostname))
    wait_for_ssh(lab, [hostname])


def power_off(lab: config.Lab, hostname: str) -> None:
    """One host's machine dies at once, as at a power cut: its links go down first, then every process
    is killed. (`docker kill` alone is not that: the container's network outlives its processes for a
    moment, and its kernel answers meanwhile, refusing connections and resetting the open ones, which a
    machine that died would never send.) `docker start` brings it back, links up."""
    if hostname in lb_vms_module.hostnames(lab):
        lb_vms_module.power_off(lab, hostname)
        return
    name = lab.container_name(hostname)
    pid = docker("inspect", "-f", "{{.State.Pid}}", name)
    links = subprocess.run(["nsenter", "-t", pid, "-n", "ip", "-o", "link", "show"], capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for line in links:
        link = line.split(":")[1].strip().partition("@")[0]
        if link != "lo":
            subprocess.run(["nsenter", "-t", pid, "-n", "ip", "link", "set", "dev", link, "down"], check=True)
    docker("kill", name)


def power_on(lab: config.Lab, hostname: str) -> None:
    """Start a host power_off stopped, and wait until it answers SSH."""
    if hostname in lb_vms_module.hostnames(lab):
        lb_vms_module.start(lab, hostname)
        return
    docker("start", lab.container_name(hostname))
    wait_for_ssh(lab, [hostname])


def _close_ssh_masters(lab: config.Lab) -> None:
    """End the shared SSH connections to the lab's hosts: a master to a removed host would hang
    the next connection to a new host at the same address."""
    if not lab.ssh_config_path.exists():
        return
    for hostname in running_hosts(lab):
        close_ssh_master(lab, hostname)


REMOVE_BATCH = 16


def _remove_when_released(kind: str, names: list[str], limit: float = 60) -> None:
    """`docker KIND rm NAMES`, retried while Docker still releases what the removed containers held:
    with dozens of hosts, `docker rm -f` returns before every network endpoint is gone ("has active
    endpoints")."""
    deadline = time.monotonic() + limit
    while True:
        try:
            docker(kind, "rm", *names)
            return
        except SystemExit as exc:
            endpoints = "active endpoints" in str(exc)
            if not (endpoints or "in use" in str(exc)) or time.monotonic() > deadline:
                if endpoints:
                    raise SystemExit(f"{exc}\nDocker kept endpoints of removed containers (moby issues 17217, "
                                     "42119); restarting dockerd clears them. Then run the command again.") from None
                raise
            time.sleep(0.5)
            names = [n for n in names if inspect(kind, n) is not None]
            if not names:
                return


def down(lab: config.Lab) -> list[str]:
    """Remove every container, network and volume carrying this lab's label, and the lab's VMs with
    what they use (lab/vm.py), and nothing else."""
    label = f"{config.LAB_LABEL}={lab.name}"
    _close_ssh_masters(lab)
    removed = lb_vms_module.down(lab) + vm.down(lab)
    containers = labelled("container", label)
    # In batches: one `docker rm -f` of dozens of busy hosts has left stale network endpoints behind
    # here (the network then cannot be removed until dockerd restarts; moby issues 17217, 42119).
    for start in range(0, len(containers), REMOVE_BATCH):
        docker("rm", "-f", "-v", *containers[start:start + REMOVE_BATCH])
    removed += containers
    for kind in ("network", "volume"):
        names = labelled(kind, label)
        if names:
            _remove_when_released(kind, names)
            removed += names
    for generated in (lab.inventory_path, lab.hosts_path, lab.ssh_config_path):
        if generated.exists():
            os.unlink(generated)
    return removed

"""The lab itself: real hosts with sshd and systemd, on one network, that reboot like machines."""

import subprocess

from lab import config as lab_config
from lab import hosts as lab_hosts
from lab.docker import labelled

# When sshd last started (the machine's monotonic clock): PIDs repeat from boot to boot in a
# container, start times do not.
SSHD_STARTED = "systemctl show -p ActiveEnterTimestampMonotonic --value ssh"


def test_every_host_answers_ssh_at_its_own_address(lab_session):
    access = lab_session.access()
    for index, h in enumerate(access.fleet.hosts):
        assert h.address == lab_session.lab.address(index)
        assert access.ssh(h, "hostname") == h.name
        assert f"inet {h.address}/" in access.ssh(h, "ip -4 -o addr show")


def test_systemd_is_pid_1_and_the_system_is_up(lab_session):
    access = lab_session.access()
    for h in access.fleet.hosts:
        assert access.ssh(h, "ps -p 1 -o comm=") == "systemd"
        state = access.ssh(h, "systemctl is-system-running --wait", check=False)
        failed = access.ssh(h, "systemctl --failed --no-legend --plain", check=False)
        assert state in ("running", "degraded"), (h.name, state)
        if state == "degraded":
            assert failed, f"{h.name} is degraded without a failed unit to explain it"
        assert access.host(h).service("ssh").is_running


def test_hosts_see_each_other_by_name(lab_session):
    access = lab_session.access()
    names = [h.name for h in access.fleet.hosts]
    for h in access.fleet.hosts:
        for other in names:
            access.ssh(h, f"ping -c1 -W2 {other} >/dev/null")


def test_reboot_brings_a_host_back_with_its_volume(lab_session):
    access = lab_session.access()
    name = access.fleet.clients[0].name
    access.ssh(name, "echo kept > /var/lib/docker/lab-marker && echo lost > /run/lab-marker")
    uptime_before = float(access.ssh(name, "cut -d' ' -f1 /proc/uptime"))
    sshd_before = access.ssh(name, SSHD_STARTED)
    lab_hosts.reboot(lab_session.lab, name)
    access = lab_session.access()  # new host keys are fine, the old master connection is not
    assert access.ssh(name, "cat /var/lib/docker/lab-marker") == "kept"
    assert access.ssh(name, "cat /run/lab-marker 2>/dev/null || echo gone") == "gone"
    assert access.ssh(name, SSHD_STARTED) != sshd_before
    if lab_hosts.LXCFS_UPTIME.exists():
        assert float(access.ssh(name, "cut -d' ' -f1 /proc/uptime")) < uptime_before


def test_down_removes_its_own_lab_and_nothing_else(lab_session):
    scratch = lab_config.default_lab("regdeploy-downtest")
    session_label = f"{lab_config.LAB_LABEL}={lab_session.lab.name}"
    session_hosts = labelled("container", session_label)
    assert session_hosts, "the session's lab must be up for this test to mean anything"
    lab_hosts.down(scratch)
    lab_hosts.up(scratch, clients=1)
    label = f"{lab_config.LAB_LABEL}={scratch.name}"
    assert len(labelled("container", label)) == 2
    lab_hosts.down(scratch)
    for kind in ("container", "network", "volume"):
        assert labelled(kind, label) == [], kind
    assert not scratch.inventory_path.exists()
    assert labelled("container", session_label) == session_hosts, "down touched another lab"
    assert subprocess.run(["docker", "image", "inspect", lab_config.HOST_IMAGE],
                          capture_output=True).returncode == 0, "down must keep the images"

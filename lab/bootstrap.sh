#!/usr/bin/env bash
# Prepare this machine as regdeploy's controller and lab host (Debian 12, as root): Debian's Docker
# engine, debootstrap and lxcfs for the lab, qemu for its VM tier, and a Python virtualenv (.venv)
# with regdeploy and its test tools. Safe to run again: it only installs or starts what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "bootstrap: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "run me as root (apt-get, dockerd and the lab's containers need it)"; exit 1
fi

# time: GNU time, which `python -m bench` runs every pyinfra under (wall, CPU, peak RSS); a minimal
# Debian does not have it. shellcheck: the unit suite checks every script regdeploy renders.
packages=(docker.io debootstrap lxcfs openssh-client python3 python3-venv iptables ca-certificates gnupg
          qemu-system-x86 qemu-utils time shellcheck)
missing=()
for package in "${packages[@]}"; do
    # A machine with another Docker engine (Docker's docker-ce, as on GitHub's runners) keeps it.
    if [ "$package" = docker.io ] && command -v dockerd >/dev/null 2>&1; then continue; fi
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# There may be no systemd as PID 1 (containers, CI runners): start the daemons by hand if needed.
if ! docker version >/dev/null 2>&1; then
    # A dockerd that was killed leaves pid files behind; while their pid exists (reused by another
    # process, or the killed daemon not yet reaped) dockerd and its containerd refuse to start.
    for entry in /var/run/docker.pid:dockerd /var/run/docker/containerd/containerd.pid:containerd; do
        pidfile=${entry%%:*}; name=${entry##*:}
        if [ -f "$pidfile" ] && ! ps -p "$(cat "$pidfile")" -o stat=,comm= 2>/dev/null \
                | grep -qE "^[^Z][^ ]* +$name\$"; then
            rm -f "$pidfile"
        fi
    done
    log "starting dockerd (log: /var/log/regdeploy-dockerd.log)"
    nohup dockerd >/var/log/regdeploy-dockerd.log 2>&1 &
    for _ in $(seq 60); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
    docker version >/dev/null 2>&1 || { log "dockerd did not start: see /var/log/regdeploy-dockerd.log"; exit 1; }
fi
# lxcfs gives each lab host its own /proc/uptime, so a reboot is visible to pyinfra and the tests.
if [ ! -e /var/lib/lxcfs/proc/uptime ]; then
    # A killed lxcfs leaves a dead FUSE mount behind ("Transport endpoint is not connected").
    umount -l /var/lib/lxcfs 2>/dev/null || true
    mkdir -p /var/lib/lxcfs
    nohup lxcfs /var/lib/lxcfs >/var/log/regdeploy-lxcfs.log 2>&1 &
    for _ in $(seq 20); do [ -e /var/lib/lxcfs/proc/uptime ] && break; sleep 0.25; done
    [ -e /var/lib/lxcfs/proc/uptime ] || log "lxcfs did not start (no /dev/fuse?): lab reboots will not reset uptime"
fi

# Reinstall the Python side only when pyproject.toml changed.
if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
fi
stamp=.venv/.regdeploy-installed
if [ ! -e "$stamp" ] || ! cmp -s pyproject.toml "$stamp"; then
    log "installing regdeploy and its test and bench tools into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test,bench]'
    cp pyproject.toml "$stamp"
fi
log "ready"

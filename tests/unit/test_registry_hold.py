"""The hold on new connections while the registry restarts (templates/parts/registry-hold.sh.j2),
against stand-in `iptables`, `ip6tables` and `docker`: the rule goes in before the restart and comes
out after it however the restart ends, expiring by itself; without iptables the restart goes on
unheld and says so. No host, no firewall touched."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest

from regdeploy.registry_files import HOLD_SECONDS
from regdeploy.rendering import render

STAND_INS = r"""
D={state}
say() {{ echo "say: $*" >> "$D/calls"; }}
date() {{ /bin/date "$@"; }}
docker() {{ echo "docker $*" >> "$D/calls"; [ ! -e "$D/docker-fails" ]; }}
wait_ready() {{ echo "wait_ready $*" >> "$D/calls"; [ ! -e "$D/never-ready" ]; }}
"""
FIREWALL = r"""
iptables() {{ echo "iptables $*" >> "$D/calls"; [ ! -e "$D/refuse$5$6" ]; }}
ip6tables() {{ echo "ip6tables $*" >> "$D/calls"; [ ! -e "$D/refuse6" ]; }}
"""


def run(tmp_path: Path, *flags: str, firewall: bool = True) -> tuple[int, list[str]]:
    for flag in flags:
        (tmp_path / flag).touch()
    script = (STAND_INS.format(state=tmp_path) + (FIREWALL.format() if firewall else "")
              + render("registry-hold.sh.j2", port=5000, hold_seconds=HOLD_SECONDS)
              + 'name=registry\nrestart_held; echo "status $?" >> "$D/calls"\n')
    # An empty PATH: the stand-ins are the only iptables and docker the script can find.
    result = subprocess.run(["/bin/sh", "-c", script], env={"PATH": str(tmp_path / "bin")}, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.returncode, (tmp_path / "calls").read_text().splitlines()


def rule(command: str, action: str, calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith(f"{command} -w 5 -t raw {action} PREROUTING")]


@pytest.mark.parametrize("flag, status", [((), "status 0"), (("docker-fails",), "status 1"),
                                          (("never-ready",), "status 1")])
def test_the_hold_goes_in_before_the_restart_and_out_after_it_however_it_ends(tmp_path, flag, status):
    _, calls = run(tmp_path, *flag)
    inserted, deleted = rule("iptables", "-I", calls), rule("iptables", "-D", calls)
    assert len(inserted) == 1 and len(deleted) == 1 and calls[-1] == status, calls
    restart = calls.index("docker restart -t 10 registry")
    assert calls.index(inserted[0]) < restart < calls.index(deleted[0])
    # The same rule out as in; new TCP connections from outside to the registry's port only.
    assert inserted[0].replace(" -I ", " -D ") == deleted[0]
    assert "! -i lo -p tcp --dport 5000 --syn -m addrtype --dst-type LOCAL" in inserted[0]
    # It expires by itself HOLD_SECONDS from now (UTC).
    until = datetime.datetime.fromisoformat(inserted[0].split("--datestop ")[1].split()[0])
    left = until.replace(tzinfo=datetime.timezone.utc) - datetime.datetime.now(datetime.timezone.utc)
    assert HOLD_SECONDS - 5 < left.total_seconds() <= HOLD_SECONDS
    # IPv6 too, when ip6tables is there.
    assert len(rule("ip6tables", "-I", calls)) == 1 and len(rule("ip6tables", "-D", calls)) == 1


def test_without_iptables_the_restart_goes_on_unheld_and_says_so(tmp_path):
    _, calls = run(tmp_path, firewall=False)
    assert calls[-1] == "status 0" and "docker restart -t 10 registry" in calls
    assert any(c.startswith("say: could not hold new connections to port 5000") for c in calls), calls


def test_a_refused_rule_is_not_removed_and_the_restart_goes_on(tmp_path):
    _, calls = run(tmp_path, "refuse-IPREROUTING", "refuse6")
    assert not rule("iptables", "-D", calls) and not rule("ip6tables", "-D", calls)
    assert any(c.startswith("say: could not hold") for c in calls) and calls[-1] == "status 0", calls


def test_a_rule_that_cannot_be_removed_is_named_with_its_expiry(tmp_path):
    _, calls = run(tmp_path, "refuse-DPREROUTING")
    said = [c for c in calls if c.startswith("say: could not remove the hold on port 5000 (iptables)")]
    assert len(said) == 1 and "expires by itself at" in said[0] and calls[-1] == "status 0", calls

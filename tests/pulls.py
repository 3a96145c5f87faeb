"""Pull loops on lab clients while something happens to the registry (a replica dies, a collection
restarts it): each client pulls, records the outcome, removes the image (so the next pull fetches
every layer again), until told to stop. The loop runs on the client itself, so the controller's
timing never decides what counts."""

from __future__ import annotations

import subprocess
import time

# One line per pull in /tmp/pulls.log: "ok END BEGIN" or "FAIL END BEGIN output" (epoch seconds: when
# it ended and began; the lab's hosts share the controller's clock).
PULL_LOOP = """
rm -f /tmp/pulls.log /tmp/pulls.stop
while [ ! -e /tmp/pulls.stop ]; do
    begin=$(date +%s.%N)
    if out=$(docker pull -q {ref} 2>&1); then echo "ok $(date +%s.%N) $begin"; else echo "FAIL $(date +%s.%N) $begin $out"; fi
    docker image rm -f {ref} >/dev/null 2>&1
done >> /tmp/pulls.log
"""


class PullLoops:
    """A pull loop of `reference` on every client of the fleet, for a `with` block."""

    def __init__(self, access, reference: str):
        self.access, self.reference = access, reference
        self.clients = [c.name for c in access.fleet.clients]
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> "PullLoops":
        for client in self.clients:
            self.processes.append(subprocess.Popen(
                ["ssh", "-F", str(self.access.ssh_config), "-o", "ControlPath=none", client,
                 PULL_LOOP.format(ref=self.reference)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return self

    def __exit__(self, *exc) -> None:
        for client in self.clients:
            self.access.ssh(client, "touch /tmp/pulls.stop")
        for process in self.processes:
            process.wait(timeout=120)

    def settle(self, pulls: int = 2, limit: float = 120) -> float:
        """Wait until every client has logged `pulls` more pulls than now; the time it was called
        (a pull ending before it ended before whatever follows)."""
        called = time.time()
        count = "cat /tmp/pulls.log 2>/dev/null | wc -l"
        wanted = {client: int(self.access.ssh(client, count)) + pulls for client in self.clients}
        while any(int(self.access.ssh(client, count)) < n for client, n in wanted.items()):
            assert time.time() - called < limit, f"the pull loops did not log {pulls} pulls in {limit} s"
            time.sleep(0.2)
        return called

    def outcomes(self) -> dict[str, list[str]]:
        return {client: self.access.ssh(client, "cat /tmp/pulls.log").splitlines() for client in self.clients}


def ended(line: str) -> float:
    """When the pull of an outcome line ended (epoch seconds)."""
    return float(line.split()[1])


def began(line: str) -> float:
    """When the pull of an outcome line began (epoch seconds)."""
    return float(line.split()[2])


def assert_no_failed_pull(outcomes: dict[str, list[str]], at_least: int) -> None:
    failed = {client: [line for line in lines if not line.startswith("ok ")] for client, lines in outcomes.items()}
    assert not any(failed.values()), failed
    counts = {client: len(lines) for client, lines in outcomes.items()}
    assert all(count >= at_least for count in counts.values()), f"too few pulls to count: {counts}"


def assert_pulled_throughout(outcomes: dict[str, list[str]], began: float, ended_at: float) -> None:
    """No pull failed, and every client pulled from before `began` until after `ended_at` (at least 4
    pulls each)."""
    assert_no_failed_pull(outcomes, at_least=4)
    for client, lines in outcomes.items():
        assert ended(lines[0]) < began and ended(lines[-1]) > ended_at, (client, began, ended_at, lines)

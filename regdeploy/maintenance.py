"""`regdeploy gc` and `prune` on replicas sharing S3 storage (templates/actions/replica-maintenance.sh.j2).

The collector is only safe while nothing writes, and a replica writes whatever the others do. So every
replica is made read-only first, one at a time: drained on every load balancer, restarted with the
read-only config.yml, and taken back once they see it UP. Pulls go on through the others meanwhile,
and through it afterwards; pushes are refused from the first switch to the last. Then one replica
deletes what the retention rules take away and runs the collector against the bucket; the cache the
replicas share (registry_lb_cache) is emptied on every load balancer, since it may name a blob just
deleted; then each replica gets its own config.yml back, one at a time. However this ends, every
replica switched is switched back, unless the cache could not be emptied: then a push could link a
layer that is gone, and the replicas stay read-only until a later gc or prune empties it. Each step
runs on one SSH connection per replica, opened first and closed last: the host's deploy lock belongs
to it, so no deploy runs on a replica in between.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from . import credentials, registry_files
from .load_balancer import LB_BACKEND, replica_drain, server_name
from .registry_plan import CONTAINER_PORT
from .rendering import render

STEPS = ("list", "pulls", "readonly", "collect", "writable")


def replica_script(settings, step: str, holder: str, **extra) -> str:
    """The maintenance script's `step` for the replica `settings` describe."""
    assert step in STEPS, step
    return render("replica-maintenance.sh.j2", step=step, **registry_files.server_variables(settings, holder),
                  lb_stats_urls=settings.lb_stats_urls, lb_ipvs=replica_drain(settings, CONTAINER_PORT),
                  lb_server=server_name(settings.host_name),
                  lb_backend=LB_BACKEND, drain_seconds=registry_files.DRAIN_SECONDS,
                  timeout=settings.registry_ready_timeout, bucket=registry_files.bucket_url(settings),
                  s3_store=True, s3_region=settings.registry_s3_region, **extra)


def step_input(settings, step: str) -> bytes:
    """What a step reads on stdin (secrets never travel in a script's text): the read-only config.yml
    (it holds the S3 key and http.secret), or the S3 key as a curl config."""
    if step == "readonly":
        return registry_files.registry_config(settings, readonly=True).encode()
    if step in ("list", "collect"):
        s3 = registry_files.s3_config(settings)
        assert s3 is not None
        return credentials.curl_config(s3.access_key, s3.secret_key).encode()
    return b""


class CacheNotEmptied(Exception):
    """The collector ran but the shared cache of these load balancers was not emptied: every replica
    was left read-only."""

    def __init__(self, lbs: list[str], outcome: "Outcome"):
        super().__init__(f"the blob-descriptor cache of {', '.join(lbs)} was not emptied")
        self.lbs, self.outcome = lbs, outcome


class StepFailed(Exception):
    """A step failed on a replica (its messages went to stderr)."""

    def __init__(self, host: str, step: str, status: int):
        super().__init__(f"{step} failed on {host} (exit {status})")
        self.host, self.step, self.status = host, step, status
        self.outcome: Outcome | None = None  # set once every replica switched was switched back


# run(host, step, extra) -> (exit status, stdout): one step on one replica.
Run = Callable[[str, str, dict], "tuple[int, bytes]"]


@dataclass
class Outcome:
    """What collect_on_replicas did: the collect step's report, and every replica put back or not."""
    report: dict = field(default_factory=dict)
    readonly: list[str] = field(default_factory=list)  # switched to read-only, in order
    writable_again: list[str] = field(default_factory=list)
    not_put_back: list[str] = field(default_factory=list)


# flush() -> the load balancers whose cache was not emptied (registry_lb_cache; none without it).
Flush = Callable[[], "list[str]"]


def collect_on_replicas(replicas: Sequence[str], run: Run, collect_extra: dict, flush: Flush = lambda: [],
                        clock: Callable[[], float] = time.time) -> Outcome:
    """Every replica read-only in turn, collect on the first, the shared cache emptied once the collect
    step ran (whatever it did), every one switched back in turn (also when a step failed: then
    StepFailed, after the put-back). A cache not emptied leaves every replica read-only:
    CacheNotEmptied. The report gains readonly_seconds (from the first switch to the last one back) and
    the replicas."""
    outcome = Outcome()
    began = clock()
    failure: StepFailed | None = None
    stale: list[str] = []
    try:
        for host in replicas:
            outcome.readonly.append(host)  # a failed switch puts itself back; writable says "already"
            status, _ = run(host, "readonly", {})
            if status != 0:
                raise StepFailed(host, "readonly", status)
        try:
            status, output = run(replicas[0], "collect", collect_extra)
        finally:
            stale = flush()
        if status != 0:
            raise StepFailed(replicas[0], "collect", status)
        outcome.report = json.loads(output.decode().splitlines()[-1])
    except StepFailed as exc:
        failure = exc
    finally:
        for host in outcome.readonly:
            if stale:
                outcome.not_put_back.append(host)
                continue
            status, _ = run(host, "writable", {})
            (outcome.writable_again if status == 0 else outcome.not_put_back).append(host)
    if stale:
        raise CacheNotEmptied(stale, outcome)
    if failure is not None:
        failure.outcome = outcome
        raise failure
    outcome.report.update(readonly_seconds=round(clock() - began, 2), replicas=list(replicas))
    return outcome

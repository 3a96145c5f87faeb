"""gc and prune on replicas (regdeploy.maintenance): the order of the steps over the replicas, and that
every replica switched to read-only is switched back however the run ends. A stand-in runs the steps:
no host."""

from __future__ import annotations

import json

import pytest

from regdeploy import credentials, maintenance, registry_files, security
from tests.scripts import VIP_LBS, replicas

REPLICAS = ["reg1", "reg2", "reg3"]
REPORT = {"freed_bytes": 10, "tags": 3}


class StandIn:
    """Runs nothing: records each (host, step) and fails the ones in `fail` (exit 1)."""

    def __init__(self, fail=(), report=REPORT):
        self.calls: list[tuple[str, str]] = []
        self.fail, self.report = set(fail), report
        self.extra: dict = {}

    def __call__(self, host, step, extra):
        self.calls.append((host, step))
        if step == "collect":
            self.extra = extra
        if (host, step) in self.fail:
            return 1, b""
        return 0, (json.dumps(self.report).encode() + b"\n") if step == "collect" else b""


def test_every_replica_goes_read_only_in_turn_then_one_collects_then_each_is_writable_again():
    run = StandIn()
    ticks = iter([100.0, 112.5])
    outcome = maintenance.collect_on_replicas(REPLICAS, run, {"delete_untagged": True}, clock=lambda: next(ticks))
    assert run.calls == [("reg1", "readonly"), ("reg2", "readonly"), ("reg3", "readonly"), ("reg1", "collect"),
                         ("reg1", "writable"), ("reg2", "writable"), ("reg3", "writable")]
    assert run.extra == {"delete_untagged": True}
    assert outcome.report == {**REPORT, "readonly_seconds": 12.5, "replicas": REPLICAS}
    assert outcome.writable_again == REPLICAS and not outcome.not_put_back


@pytest.mark.parametrize("failing, switched", [
    (("reg1", "readonly"), ["reg1"]),
    (("reg2", "readonly"), ["reg1", "reg2"]),
    (("reg3", "readonly"), REPLICAS),
    (("reg1", "collect"), REPLICAS),
])
def test_a_failed_step_collects_nothing_and_switches_back_every_replica_it_reached(failing, switched):
    run = StandIn(fail=[failing])
    with pytest.raises(maintenance.StepFailed) as failed:
        maintenance.collect_on_replicas(REPLICAS, run, {})
    assert (failed.value.host, failed.value.step) == failing
    collected = ("reg1", "collect") in run.calls
    assert collected == (failing == ("reg1", "collect"))  # never collected unless every replica was read-only
    assert [h for h, step in run.calls if step == "writable"] == switched
    assert failed.value.outcome is not None and failed.value.outcome.writable_again == switched


class Flush:
    """The load balancers' cache, emptied or not: the run's calls are recorded in the same list."""

    def __init__(self, run: StandIn, failing=()):
        self.run, self.failing = run, list(failing)

    def __call__(self) -> list[str]:
        self.run.calls.append(("lbs", "flush"))
        return self.failing


@pytest.mark.parametrize("failing", [(), (("reg1", "collect"),)])
def test_the_shared_cache_is_emptied_once_the_collector_ran_before_any_replica_is_writable(failing):
    """Whatever the collect step did (it may have deleted blobs before it failed), the cache may name a
    deleted blob: it is emptied before the first replica takes pushes again."""
    run = StandIn(fail=list(failing))
    flush = Flush(run)
    if failing:
        with pytest.raises(maintenance.StepFailed):
            maintenance.collect_on_replicas(REPLICAS, run, {}, flush=flush)
    else:
        maintenance.collect_on_replicas(REPLICAS, run, {}, flush=flush)
    assert run.calls == [("reg1", "readonly"), ("reg2", "readonly"), ("reg3", "readonly"), ("reg1", "collect"),
                         ("lbs", "flush"), ("reg1", "writable"), ("reg2", "writable"), ("reg3", "writable")]


def test_a_cache_not_emptied_leaves_every_replica_read_only():
    """A push then could find a deleted layer in the cache and link it: pulls go on, pushes wait for a
    later gc or prune, which empties the cache and makes them writable."""
    run = StandIn()
    with pytest.raises(maintenance.CacheNotEmptied) as failed:
        maintenance.collect_on_replicas(REPLICAS, run, {}, flush=Flush(run, failing=["lb2"]))
    assert failed.value.lbs == ["lb2"] and "lb2" in str(failed.value)
    assert not any(step == "writable" for _, step in run.calls)
    assert failed.value.outcome.not_put_back == REPLICAS and failed.value.outcome.writable_again == []


def test_no_cache_is_emptied_when_no_replica_went_read_only():
    run = StandIn(fail=[("reg1", "readonly")])
    with pytest.raises(maintenance.StepFailed):
        maintenance.collect_on_replicas(REPLICAS, run, {}, flush=Flush(run))
    assert ("lbs", "flush") not in run.calls


def test_a_replica_that_cannot_be_made_writable_again_is_named_and_the_others_still_are():
    run = StandIn(fail=[("reg2", "writable")])
    outcome = maintenance.collect_on_replicas(REPLICAS, run, {})
    assert outcome.not_put_back == ["reg2"] and outcome.writable_again == ["reg1", "reg3"]


def test_an_interruption_still_switches_back_every_replica_reached():
    class Interrupted(StandIn):
        def __call__(self, host, step, extra):
            if (host, step) == ("reg2", "readonly"):
                self.calls.append((host, step))
                raise KeyboardInterrupt
            return super().__call__(host, step, extra)

    run = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        maintenance.collect_on_replicas(REPLICAS, run, {})
    assert [h for h, step in run.calls if step == "writable"] == ["reg1", "reg2"]


def test_secrets_go_on_stdin_never_in_a_scripts_text(monkeypatch):
    monkeypatch.setenv(credentials.S3_ENV, "s3-secret: 'quoted' #not a comment")
    monkeypatch.setenv(credentials.HTTP_SECRET_ENV, "shared-http-secret")
    fleet = replicas(lbs=VIP_LBS, registry_lb_vip="10.0.0.100/24")
    settings = fleet["reg1"]
    secret = registry_files.s3_config(settings).secret_key
    readonly = maintenance.step_input(settings, "readonly").decode()
    assert "readonly:" in readonly and secret in readonly and "shared-http-secret" in readonly
    assert secret in maintenance.step_input(settings, "list").decode()
    assert maintenance.step_input(settings, "writable") == b""
    for step in maintenance.STEPS:
        script = maintenance.replica_script(settings, step, "holder", delete_untagged=True, pulls_window=60)
        assert secret not in script and "shared-http-secret" not in script
        assert security.cache_password(settings) not in script

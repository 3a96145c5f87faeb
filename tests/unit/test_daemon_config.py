"""daemon.json: parsing, merging without losing anything, choosing reload or restart."""

import pytest

from regdeploy.daemon_config import (DaemonConfigError, apply_action, merge, parse, render,
                                     unknown_keys)

PREFILLED = {
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m", "max-file": "3"},
    "data-root": "/var/lib/docker",
    "insecure-registries": ["legacy.example:5000"],
    "registry-mirrors": ["https://mirror.example"],
}


def test_absent_or_blank_file_is_an_empty_config():
    assert parse(None, "f") == {}
    assert parse("  \n", "f") == {}


@pytest.mark.parametrize("raw", ["{bad", "[1, 2]", '"text"', "{'single': 1}"])
def test_malformed_file_is_refused_with_its_name(raw):
    with pytest.raises(DaemonConfigError, match="host 'c1': /etc/docker/daemon.json"):
        parse(raw, "host 'c1': /etc/docker/daemon.json")


def test_merge_keeps_every_key_and_entry_and_appends_the_registry():
    merged = merge(PREFILLED, "registry:5000")
    assert merged["insecure-registries"] == ["legacy.example:5000", "registry:5000"]
    for key in ("log-driver", "log-opts", "data-root", "registry-mirrors"):
        assert merged[key] == PREFILLED[key]
    assert PREFILLED["insecure-registries"] == ["legacy.example:5000"], "input must not be mutated"


def test_merge_adds_no_duplicates_and_is_idempotent():
    once = merge({}, "registry:5000", ("https://m.example",))
    assert merge(once, "registry:5000", ("https://m.example",)) == once
    assert once == {"insecure-registries": ["registry:5000"], "registry-mirrors": ["https://m.example"]}


def test_merge_leaves_mirrors_alone_when_none_are_asked_for():
    assert "registry-mirrors" not in merge({"debug": True}, "r:5000")


def test_apply_action_nothing_reload_restart():
    current = merge(PREFILLED, "registry:5000")
    assert apply_action(current, current) is None
    assert apply_action(PREFILLED, current) == "reload"
    assert apply_action({}, {"insecure-registries": ["r:5000"], "debug": True}) == "reload"
    assert apply_action(current, {**current, "data-root": "/srv/docker"}) == "restart"
    assert apply_action(current, {**current, "log-driver": "journald"}) == "restart"


def test_unknown_keys_are_reported():
    assert unknown_keys(PREFILLED) == []
    assert unknown_keys({"insecure-registry": ["x"], "debug": True}) == ["insecure-registry"]


def test_render_is_stable_json():
    assert render({"b": 1, "a": [1]}) == '{\n  "b": 1,\n  "a": [\n    1\n  ]\n}\n'


# --- Property test: whatever daemon.json an operator has, the merge loses nothing ----------------

import json  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from regdeploy.daemon_config import check_mergeable  # noqa: E402

REGISTRY = "registry:5000"
MIRRORS = ("https://mirror.example",)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
string_lists = st.lists(st.sampled_from([REGISTRY, "legacy:5000", "10.0.0.0/8", "x"]) | st.text(max_size=10),
                        max_size=4)
# What the keys regdeploy merges may hold: mostly lists of strings, sometimes anything else.
merged_key_values = st.one_of(string_lists, string_lists, st.none(), json_values)
configs = st.dictionaries(st.text(max_size=12).filter(lambda k: k not in ("insecure-registries", "registry-mirrors")),
                          json_values, max_size=5)


def _mergeable(value) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))


@settings(max_examples=600, deadline=None)
@given(configs, st.none() | merged_key_values, st.none() | merged_key_values, st.booleans(), st.booleans(),
       st.booleans())
def test_merge_keeps_everything_adds_once_is_idempotent_or_refuses(
        other_keys, insecure, mirrors_value, has_insecure, has_mirrors, with_mirrors):
    current = dict(other_keys)
    if has_insecure:
        current["insecure-registries"] = insecure
    if has_mirrors:
        current["registry-mirrors"] = mirrors_value
    mirrors = MIRRORS if with_mirrors else ()
    where = "host 'c1': /etc/docker/daemon.json"
    # The file as dockerd would read it: parse() of its text gives back the same dict.
    assert parse(json.dumps(current), where) == current

    mergeable = _mergeable(current.get("insecure-registries")) and (
        not mirrors or _mergeable(current.get("registry-mirrors")))
    if not mergeable:
        with pytest.raises(DaemonConfigError, match="must be a list of strings") as refused:
            check_mergeable(current, where, mirrors)
        assert where in str(refused.value)
        return
    check_mergeable(current, where, mirrors)
    merged = merge(current, REGISTRY, mirrors)
    # Every other key, and its value, unchanged.
    for key, value in current.items():
        if key not in ("insecure-registries", "registry-mirrors") or (key == "registry-mirrors" and not mirrors):
            assert merged[key] == value
    # Every entry that was there stays, in order; the registry is there exactly once more at most.
    before = current.get("insecure-registries") or []
    assert merged["insecure-registries"][:len(before)] == before
    assert merged["insecure-registries"].count(REGISTRY) == max(1, before.count(REGISTRY))
    if mirrors:
        old_mirrors = current.get("registry-mirrors") or []
        assert merged["registry-mirrors"][:len(old_mirrors)] == old_mirrors
        assert MIRRORS[0] in merged["registry-mirrors"]
    # Idempotent, and what is written is valid JSON that reads back as the merge.
    assert merge(merged, REGISTRY, mirrors) == merged
    assert json.loads(render(merged)) == merged


@pytest.mark.parametrize("raw,message", [
    ('{"insecure-registries": "registry:5000"}', "'insecure-registries' must be a list of strings"),
    ('{"insecure-registries": ["a:5000", 5000]}', "'insecure-registries' must be a list of strings"),
    ('{"insecure-registries": {"a": 1}}', "'insecure-registries' must be a list of strings"),
])
def test_a_value_that_cannot_be_merged_is_refused_with_host_file_and_key(raw, message):
    where = "host 'c1': /etc/docker/daemon.json"
    with pytest.raises(DaemonConfigError, match=message) as refused:
        check_mergeable(parse(raw, where), where)
    assert str(refused.value).startswith(where)


def test_mirrors_are_checked_only_when_regdeploy_merges_them():
    current = {"registry-mirrors": "https://m.example"}
    check_mergeable(current, "f")
    with pytest.raises(DaemonConfigError, match="'registry-mirrors' must be a list of strings"):
        check_mergeable(current, "f", MIRRORS)


@pytest.mark.parametrize("raw", ['{"debug": true, "debug": false}',
                                 '{"insecure-registries": ["a:1"], "insecure-registries": ["b:2"]}'])
def test_a_key_set_twice_is_refused(raw):
    with pytest.raises(DaemonConfigError, match="sets the key .* twice"):
        parse(raw, "f")


def test_a_byte_order_mark_is_refused_as_not_json():
    with pytest.raises(DaemonConfigError, match="is not valid JSON"):
        parse('\ufeff{"debug": true}', "f")


def test_a_daemon_that_has_not_loaded_the_file_is_reloaded():
    current = merge({}, REGISTRY)
    assert apply_action(current, current, daemon_trusts=True) is None
    assert apply_action(current, current, daemon_trusts=False) == "reload"


# --- The whole decision for one host: DockerHostState in, plan out --------------------------------

from regdeploy.daemon_config import can_validate, plan_daemon_json  # noqa: E402
from regdeploy.host_state import HostState  # noqa: E402


def host_state(text=None, kind=None, detail="644", trusted=("registry:5000",), active=True,
               version="20.10.24+dfsg1-1+deb12u1+b6", flags=()):
    kind = kind or ("present" if text is not None else "absent")
    return HostState(command_line_registries=list(flags), daemon_json_kind=kind, daemon_json_detail=detail,
                     daemon_json=text, active=active, trusted=list(trusted) if trusted is not None else None,
                     dockerd_version=version)


CONVERGED = '{"insecure-registries": ["registry:5000"]}'


@pytest.mark.parametrize("state,action,validate,reason", [
    (host_state(CONVERGED), None, False, "/etc/docker/daemon.json lists registry:5000 and dockerd trusts it"),
    (host_state(None, active=False, trusted=None, version=None), "reload", False, "insecure-registries changed"),
    (host_state('{"debug": true}'), "reload", False, "insecure-registries changed"),
    (host_state('{"log-driver": "json-file"}', version="28.5.2+dfsg1-1"), "reload", True,
     "insecure-registries changed"),
    # The file says so, the daemon does not (a reload that never happened): reload.
    (host_state(CONVERGED, trusted=()), "reload", False, "dockerd has not loaded registry:5000 from /etc/docker/daemon.json"),
    # Docker is stopped: the apply script starts it; nothing to reload for.
    (host_state(CONVERGED, active=False, trusted=None), None, False,
     "/etc/docker/daemon.json lists registry:5000 and dockerd trusts it"),
])
def test_plan_daemon_json(state, action, validate, reason):
    plan = plan_daemon_json(state, "/etc/docker/daemon.json", "registry:5000", (), "c1")
    assert (plan.action, plan.validate, plan.reason) == (action, validate, reason)
    assert json.loads(plan.content)["insecure-registries"][-1] == "registry:5000"


@pytest.mark.parametrize("state,message", [
    (host_state(CONVERGED, flags=["ExecStart=/usr/sbin/dockerd --insecure-registry old:5000"]),
     "dockerd already gets --insecure-registry on its command line"),
    (host_state(None, kind="symlink", detail="/etc/docker/real.json"), "is a symbolic link to /etc/docker/real.json"),
    (host_state(None, kind="other", detail="directory"), "is a directory, not a regular file"),
    (host_state("{}", detail="0"), "has mode 000"),
    (host_state("{bad"), "is not valid JSON"),
    (host_state('{"insecure-registries": "registry:5000"}'), "'insecure-registries' must be a list of strings"),
    # Docker 20.10 cannot check a file itself: regdeploy's known keys do.
    (host_state('{"insecure-registry": ["typo:5000"]}'), "unknown daemon.json keys ['insecure-registry']"),
])
def test_plan_daemon_json_refuses_naming_host_and_file(state, message):
    with pytest.raises(DaemonConfigError, match="^host 'c1': /etc/docker/daemon.json") as refused:
        plan_daemon_json(state, "/etc/docker/daemon.json", "registry:5000", (), "c1")
    assert message in str(refused.value)


def test_a_dockerd_that_validates_gets_unknown_keys_checked_by_itself():
    state = host_state('{"some-new-key": 1}', version="26.1.5+dfsg1-9+b6")
    plan = plan_daemon_json(state, "/etc/docker/daemon.json", "registry:5000", (), "c1")
    assert plan.action == "reload" and plan.validate


@pytest.mark.parametrize("version,expected", [
    ("20.10.24+dfsg1-1+deb12u1+b6", False), ("5:23.0.0-1~debian.12~bookworm", True),
    ("26.1.5+dfsg1-9+b6", True), ("28.5.2+dfsg1-1", True), ("5:20.10.24-1~regdeploy.lab", False),
    ("5:27.3.1-1~debian.12~bookworm", True), (None, False), ("", False),
])
def test_can_validate_from_the_version(version, expected):
    assert can_validate(version) is expected


def test_the_plan_says_key_by_key_what_the_file_gets():
    state = host_state('{"log-driver": "json-file", "insecure-registries": ["legacy:5000"]}')
    plan = plan_daemon_json(state, "/etc/docker/daemon.json", "registry:5000", ("https://m.example",), "c1")
    assert plan.changes == ('insecure-registries: + "registry:5000"',
                            'registry-mirrors: (absent) -> ["https://m.example"]')


def test_tls_takes_only_the_registry_out_of_insecure_registries():
    merged = merge({**PREFILLED, "insecure-registries": ["legacy.example:5000", "registry:5000"]},
                   "registry:5000", secure=True)
    assert merged == PREFILLED
    assert merge({"insecure-registries": ["registry:5000"]}, "registry:5000", secure=True) == {"insecure-registries": []}
    assert merge({"debug": True}, "registry:5000", secure=True) == {"debug": True}  # nothing added


@pytest.mark.parametrize("state,action,reason", [
    # Never listed, not loaded: nothing to do (a fresh host in TLS mode keeps its daemon.json as it is).
    (host_state('{"debug": true}', trusted=()), None, "neither /etc/docker/daemon.json nor dockerd lists"),
    (host_state(None, active=False, trusted=None), None, "neither /etc/docker/daemon.json nor dockerd lists"),
    # Insecure → TLS: the entry leaves the file, dockerd reloads (no restart: containers keep running).
    (host_state(CONVERGED), "reload", "insecure-registries changed"),
    # The file is right but dockerd still treats the registry as insecure (a reload that never happened).
    (host_state('{"insecure-registries": []}'), "reload", "dockerd still treats registry:5000 as insecure"),
])
def test_plan_daemon_json_in_tls_mode(state, action, reason):
    plan = plan_daemon_json(state, "/etc/docker/daemon.json", "registry:5000", (), "c1", secure=True)
    assert plan.action == action and plan.reason.startswith(reason), plan
    assert "registry:5000" not in parse(plan.content, "f").get("insecure-registries", [])


# --- Written before the install, or after it ----------------------------------------------------

from regdeploy.daemon_config import write_before_install  # noqa: E402

FRESH = dict(active=False, trusted=None, version=None)


@pytest.mark.parametrize("state,installs_engine,secure,expected", [
    # A fresh host: the file is new and the package's first start of dockerd reads it.
    (host_state(None, **FRESH), True, False, True),
    # An operator's file (kept, merged, validated and rolled back to): after the install, as before.
    (host_state('{"debug": true}', **FRESH), True, False, False),
    # Already right (an earlier run stopped during the install): nothing to write.
    (host_state(CONVERGED, **FRESH), True, False, False),
    # Docker stays as it is (installed already, or docker_install_source none).
    (host_state(None, **FRESH), False, False, False),
    # A dockerd runs (installed by hand, without the package): it gets the apply script's start/reload.
    (host_state(None, active=True, trusted=(), version=None), True, False, False),
    # TLS on a fresh host: no file at all.
    (host_state(None, **FRESH), True, True, False),
])
def test_daemon_json_is_written_before_the_install_only_on_a_fresh_host(state, installs_engine, secure, expected):
    plan = plan_daemon_json(state, "/etc/docker/daemon.json", "registry:5000", (), "c1", secure=secure)
    assert write_before_install(state, plan, installs_engine) is expected

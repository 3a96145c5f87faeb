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

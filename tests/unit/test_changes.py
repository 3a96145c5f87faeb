"""What --dry says a change does: key by key for daemon.json, a unified diff for config.yml, and
never a secret's value."""

import pytest

from regdeploy.changes import HIDDEN, json_changes, mask_secrets, text_diff


@pytest.mark.parametrize("old,new,lines", [
    ({}, {"insecure-registries": ["registry:5000"]}, ['insecure-registries: (absent) -> ["registry:5000"]']),
    ({"insecure-registries": ["legacy:5000"], "debug": True},
     {"insecure-registries": ["legacy:5000", "registry:5001"], "debug": True},
     ['insecure-registries: + "registry:5001"']),
    ({"log-level": "info"}, {"log-level": "debug"}, ['log-level: "info" -> "debug"']),
    ({"a": 1}, {}, ["a: 1 -> (absent)"]),
    ({"same": [1]}, {"same": [1]}, []),
])
def test_json_changes_key_by_key(old, new, lines):
    assert json_changes(old, new) == lines


def test_secret_values_never_appear():
    assert json_changes({"registry-password": "old-pw"}, {"registry-password": "new-pw"}) == [
        f"registry-password: {HIDDEN} -> {HIDDEN}"]
    assert mask_secrets(["http:", "  secret: s3cr3t", '  "password": "pw"', "token=abc", "addr: :5000"]) == [
        "http:", f"  secret: {HIDDEN}", f'  "password": {HIDDEN}', f"token={HIDDEN}", "addr: :5000"]
    diff = "\n".join(text_diff("http:\n  secret: one\n", "http:\n  secret: two\n  addr: :5000\n", "/c.yml"))
    assert "one" not in diff and "two" not in diff and "+  addr: :5000" in diff


def test_text_diff_of_a_hand_edited_file_and_of_a_new_one():
    assert text_diff("delete:\n  enabled: false\n", "delete:\n  enabled: true\n", "/etc/regdeploy/config.yml") == [
        "--- /etc/regdeploy/config.yml (on the host)", "+++ /etc/regdeploy/config.yml (regdeploy)",
        "@@ -1,2 +1,2 @@", " delete:", "-  enabled: false", "+  enabled: true"]
    assert text_diff(None, "a: 1\n", "/x")[:3] == ["--- /dev/null", "+++ /x (regdeploy)", "@@ -0,0 +1 @@"]
    assert text_diff("a\n", "a\n", "/x") == []

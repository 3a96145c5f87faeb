"""Registry accounts: where passwords come from, and htpasswd/stamps compared by verifying."""

import pytest
from hypothesis import given, settings, strategies as st

from regdeploy import credentials
from regdeploy.credentials import CredentialError


def _file(tmp_path, text, mode=0o600):
    path = tmp_path / "passwords"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_the_environment_wins_over_the_file(tmp_path):
    path = _file(tmp_path, "# accounts\nci:from-file\nread-only.bot:a:b:c\n")
    found = credentials.load_passwords(("ci", "read-only.bot"), path, {"REGDEPLOY_PASSWORD_CI": "from-env"})
    assert found == {"ci": "from-env", "read-only.bot": "a:b:c"}
    assert credentials.env_name("read-only.bot") == "REGDEPLOY_PASSWORD_READ_ONLY_BOT"


def test_every_missing_password_is_named_with_where_to_put_it(tmp_path):
    with pytest.raises(CredentialError) as error:
        credentials.load_passwords(("ci", "ops"), str(tmp_path / "absent"), {})
    assert "REGDEPLOY_PASSWORD_CI" in str(error.value) and "REGDEPLOY_PASSWORD_OPS" in str(error.value)


def test_a_password_file_others_can_read_is_refused(tmp_path):
    with pytest.raises(CredentialError, match="mode 644.*chmod 600"):
        credentials.load_passwords(("ci",), _file(tmp_path, "ci:x\n", 0o644), {})


def test_too_long_passwords_are_refused(tmp_path):
    with pytest.raises(CredentialError, match="at most 72 bytes"):
        credentials.load_passwords(("ci",), str(tmp_path / "absent"), {"REGDEPLOY_PASSWORD_CI": "x" * 73})


def test_htpasswd_is_kept_while_every_hash_verifies():
    first = credentials.plan_htpasswd(None, {"ci": "one", "ops": "two"})
    assert credentials.plan_htpasswd(first, {"ci": "one", "ops": "two"}) is None
    # One password changes: one line changes, the other keeps its hash (and salt).
    changed = credentials.plan_htpasswd(first, {"ci": "one", "ops": "three"})
    assert changed.splitlines()[0] == first.splitlines()[0] and changed.splitlines()[1] != first.splitlines()[1]
    # Users added or removed rewrite the file.
    assert credentials.parse_htpasswd(credentials.plan_htpasswd(first, {"ci": "one"})).keys() == {"ci"}
    assert credentials.parse_htpasswd(credentials.plan_htpasswd(first, {"ci": "one", "ops": "two", "x": "y"})).keys() \
        == {"ci", "ops", "x"}


@settings(max_examples=15, deadline=None)
@given(st.text(min_size=1, max_size=30).filter(lambda p: "\n" not in p))
def test_stamps_verify_the_password_they_were_made_with(password):
    made = credentials.stamp("ci", password) + " 600"
    assert credentials.stamp_matches(made, "ci", password)
    assert not credentials.stamp_matches(made, "ci", password + "x")
    assert not credentials.stamp_matches(made, "ops", password)
    assert not credentials.stamp_matches(made.replace(" 600", " 644"), "ci", password)  # credential readable by others


def test_curl_config_quotes_what_curl_would_read_otherwise():
    assert credentials.curl_config("ci", 'a"b\\c') == 'user = "ci:a\\"b\\\\c"\n'


def test_one_run_stamps_every_host_alike_so_the_next_verifies_once():
    assert credentials.stamp("ci", "pw") == credentials.stamp("ci", "pw")
    assert credentials.stamp("ci", "pw") != credentials.stamp("ci", "pw2")

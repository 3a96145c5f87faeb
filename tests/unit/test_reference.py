"""Docker's image reference grammar, valid and invalid, with the reason for each rejection."""

import pytest

from regdeploy.reference import ReferenceError, is_valid, parse

HEX = "a" * 64

VALID = [
    # reference, domain, path, tag, digest
    ("busybox", "docker.io", "library/busybox", None, None),
    ("busybox:latest", "docker.io", "library/busybox", "latest", None),
    ("library/busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("docker.io/library/busybox", "docker.io", "library/busybox", None, None),
    ("index.docker.io/library/busybox", "docker.io", "library/busybox", None, None),
    ("mycom/base:latest", "docker.io", "mycom/base", "latest", None),
    ("registry.domain.com/mycom/base:latest", "registry.domain.com", "mycom/base", "latest", None),
    ("localhost/a", "localhost", "a", None, None),
    ("localhost:5000/a", "localhost:5000", "a", None, None),
    ("localhost:5000/a:tag", "localhost:5000", "a", "tag", None),
    ("a:5000", "docker.io", "library/a", "5000", None),  # no slash: 5000 is a tag
    ("a:tag", "docker.io", "library/a", "tag", None),
    ("a:5000/b", "a:5000", "b", None, None),  # a slash after it: a:5000 is the registry
    ("registry:5000/lab/busybox:rt-1", "registry:5000", "lab/busybox", "rt-1", None),
    ("a/b/c:tag@sha256:" + HEX, "docker.io", "a/b/c", "tag", "sha256:" + HEX),
    ("a/b/c@sha256:" + HEX, "docker.io", "a/b/c", None, "sha256:" + HEX),
    ("[::1]:5000/a", "[::1]:5000", "a", None, None),
    ("[2001:db8::1]/team/app:v2", "[2001:db8::1]", "team/app", "v2", None),
    ("192.168.0.10:5000/app", "192.168.0.10:5000", "app", None, None),
    ("Registry.Example.COM/app", "Registry.Example.COM", "app", None, None),  # host part may be uppercase
    ("a.b/c_d/e__f/g-h/i--j/k.l", "a.b", "c_d/e__f/g-h/i--j/k.l", None, None),
    ("x.y/app:_tag", "x.y", "app", "_tag", None),
    ("x.y/app:" + "t" * 128, "x.y", "app", "t" * 128, None),
    ("x.y/app:Tag.With-Mixed_Case", "x.y", "app", "Tag.With-Mixed_Case", None),
    ("0/1:2", "docker.io", "0/1", "2", None),
    ("x.y/app@sha512:" + "b" * 128, "x.y", "app", None, "sha512:" + "b" * 128),
]

INVALID = [
    # reference, words the error must contain
    ("", "empty"),
    ("MyCom/base", "uppercase letters are not allowed in the repository name 'MyCom/base'"),
    ("Busybox", "uppercase"),
    ("registry:5000/Lab/app", "uppercase"),
    ("a b", "whitespace"),
    ("a//b", "empty path component"),
    ("a/", "empty path component"),
    ("/a", "empty path component"),
    ("-a", "must start and end"),
    ("a-", "must start and end"),
    ("a/_b", "must start and end"),
    ("a___b", "invalid separator"),
    ("a.-b", "invalid separator"),
    ("a..b", "invalid separator"),
    ("a!b", "character '!'"),
    ("a:", "tag in 'a:' is empty"),
    ("a:-tag", "must not start with '-'"),
    ("a:.tag", "must not start with '.'"),
    ("a:ta/g", "registry host 'a:ta'"),  # a slash after it makes 'a:ta' a host with a bad port
    ("x.y/app:" + "t" * 129, "limit is 128"),
    ("a:t!g", "character '!'"),
    ("a@sha256:abc", "64 lowercase hex"),
    ("a@sha256:" + "A" * 64, "64 lowercase hex"),
    ("a@md5:" + "a" * 32, "not supported"),
    ("a@", "must look like sha256"),
    ("a@sha256:" + HEX + "@sha256:" + HEX, "64 lowercase hex"),
    (HEX, "image ID"),
    ("-host.com/a", "registry host"),
    ("host-.com/a", "registry host"),
    ("host.com:port/a", "registry host"),
    ("[::1/a", "registry host"),
    ("host.com:5000/", "empty"),
    ("x.y/" + "/".join(["abcdefghij"] * 23) + "/abcdefghijkl", "limit is 255"),
    ("a\tb", "whitespace"),
]


@pytest.mark.parametrize("ref,domain,path,tag,digest", VALID, ids=[v[0][:60] for v in VALID])
def test_valid_references_parse_into_their_parts(ref, domain, path, tag, digest):
    parsed = parse(ref)
    assert (parsed.domain, parsed.path, parsed.tag, parsed.digest) == (domain, path, tag, digest)
    assert is_valid(ref)


@pytest.mark.parametrize("ref,reason", INVALID, ids=[i[0][:60] or "<empty>" for i in INVALID])
def test_invalid_references_say_what_is_wrong(ref, reason):
    with pytest.raises(ReferenceError) as excinfo:
        parse(ref)
    assert reason in str(excinfo.value)
    assert not is_valid(ref)


def test_table_is_large_enough():
    assert len(VALID) + len(INVALID) >= 40


def test_255_characters_is_still_valid():
    name = "x.y/" + "a" * 251
    assert len(name) == 255
    assert parse(name).path == "a" * 251


@pytest.mark.parametrize("ref,normalized,familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox"),
    ("mycom/base:1", "docker.io/mycom/base:1", "mycom/base:1"),
    ("localhost:5000/a", "localhost:5000/a:latest", "localhost:5000/a"),
    ("a@sha256:" + HEX, "docker.io/library/a@sha256:" + HEX, "a@sha256:" + HEX),
])
def test_normalized_and_familiar_forms(ref, normalized, familiar):
    assert parse(ref).normalized == normalized
    assert parse(ref).familiar == familiar


def test_naming_an_image_inside_another_registry():
    assert parse("busybox:1.36").in_registry("registry:5000").familiar == "registry:5000/busybox:1.36"
    assert parse("mycom/base").in_registry("registry:5000").familiar == "registry:5000/mycom/base:latest"

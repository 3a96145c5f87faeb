"""The registry's TLS material: made once, re-issued exactly when it must be, checked when given."""

import datetime
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from regdeploy import pki

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.timezone.utc)
NAMES = ["registry.example.com", "reg1", "10.0.0.5"]


@pytest.fixture(scope="module")
def ca():
    return pki.make_ca(NOW)


def test_material_is_made_with_every_name_and_private_keys(tmp_path):
    material, done = pki.generated_material(tmp_path / "tls", NAMES, now=NOW)
    assert len(done) == 2 and "made a new CA" in done[0] and "no server certificate yet" in done[1]
    cert = x509.load_pem_x509_certificate(material.cert_pem.encode())
    assert pki.cert_names(cert) == {"registry.example.com", "reg1", "10.0.0.5"}
    assert cert.not_valid_after_utc - NOW == pki.CERT_VALIDITY
    ca = x509.load_pem_x509_certificate(material.ca_pem.encode())
    cert.verify_directly_issued_by(ca)
    directory = tmp_path / "tls"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for key in (pki.CA_KEY, pki.SERVER_KEY):
        assert stat.S_IMODE((directory / key).stat().st_mode) == 0o600
    assert (directory / ".gitignore").read_text().splitlines()[-1] == "*"


def test_a_second_run_reuses_everything(tmp_path):
    first, _ = pki.generated_material(tmp_path, NAMES, now=NOW)
    again, done = pki.generated_material(tmp_path, NAMES, now=NOW + datetime.timedelta(days=300))
    assert done == [] and again == first


def test_new_names_or_near_expiry_reissue_the_certificate_not_the_ca(tmp_path):
    first, _ = pki.generated_material(tmp_path, NAMES, now=NOW)
    renamed, done = pki.generated_material(tmp_path, NAMES + ["alias.example.com"], now=NOW)
    assert len(done) == 1 and "+alias.example.com" in done[0]
    assert renamed.ca_pem == first.ca_pem and renamed.cert_pem != first.cert_pem
    late = NOW + pki.CERT_VALIDITY - datetime.timedelta(days=29)
    renewed, done = pki.generated_material(tmp_path, NAMES + ["alias.example.com"], now=late)
    assert len(done) == 1 and "within 30 days" in done[0]
    assert renewed.ca_pem == first.ca_pem and renewed.key_pem != renamed.key_pem


@pytest.mark.parametrize("case,reason", [
    ("fresh", None),
    ("missing", "there is no server certificate yet"),
    ("31 days left", None),
    ("29 days left", "it expires on"),
    ("other names", "the names it must cover changed (+10.0.0.5, -10.0.0.6)"),
    ("other ca", "the certificate was not issued by the current CA"),
])
def test_reissue_reason(ca, case, reason):
    ca_cert, ca_key = ca
    names = NAMES
    cert = None
    if case != "missing":
        issued_by = pki.make_ca(NOW) if case == "other ca" else ca
        cert_names = [n if n != "10.0.0.5" else "10.0.0.6" for n in NAMES] if case == "other names" else NAMES
        cert, _ = pki.issue(*issued_by, cert_names, NOW)
    now = {"31 days left": NOW + pki.CERT_VALIDITY - datetime.timedelta(days=31),
           "29 days left": NOW + pki.CERT_VALIDITY - datetime.timedelta(days=29)}.get(case, NOW)
    found = pki.reissue_reason(cert, ca_cert, pki.wanted_names(names), now)
    assert (found is None) == (reason is None) and (reason is None or found.startswith(reason)), found


def _write(tmp_path, name, obj) -> str:
    path = tmp_path / name
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(path)


def test_given_material_is_checked_like_a_handshake(tmp_path, ca):
    ca_cert, ca_key = ca
    cert, key = pki.issue(ca_cert, ca_key, ["registry.corp.example"], NOW)
    paths = (_write(tmp_path, "c.pem", cert), _write(tmp_path, "k.pem", key), _write(tmp_path, "ca.pem", ca_cert))
    material = pki.given_material(*paths, registry_host="registry.corp.example")
    assert not material.generated and material.ca_pem == open(paths[2]).read()

    with pytest.raises(pki.TlsError, match="does not name 'other.example'"):
        pki.given_material(*paths, registry_host="other.example")
    _, other_key = pki.issue(ca_cert, ca_key, ["registry.corp.example"], NOW)
    with pytest.raises(pki.TlsError, match="is not the key of"):
        pki.given_material(paths[0], _write(tmp_path, "k2.pem", other_key), paths[2], "registry.corp.example")
    with pytest.raises(pki.TlsError, match="did not issue"):
        pki.given_material(paths[0], paths[1], _write(tmp_path, "ca2.pem", pki.make_ca(NOW)[0]), "registry.corp.example")
    os.unlink(paths[1])
    with pytest.raises(pki.TlsError, match="registry_tls_key=.* does not exist on the controller"):
        pki.given_material(*paths, registry_host="registry.corp.example")


def test_certificates_within_30_days_of_expiry_are_found(ca):
    ca_cert, ca_key = ca
    soon, _ = pki.issue(ca_cert, ca_key, ["reg1"], NOW, validity=datetime.timedelta(days=20))
    later, _ = pki.issue(ca_cert, ca_key, ["reg1"], NOW, validity=datetime.timedelta(days=200))
    pem = pki._cert_pem(soon) + pki._cert_pem(later)
    found = pki.expiring(pem, NOW)
    assert [(subject, expiry.date()) for subject, expiry in found] == [
        ("CN=reg1", (NOW + datetime.timedelta(days=20)).date())]
    assert pki.expiring(pki._cert_pem(later), NOW) == []
    assert len(pki.expiring(pki._cert_pem(later), NOW + datetime.timedelta(days=190))) == 1


def test_a_ca_rotation_overlaps_and_refuses_steps_out_of_order(tmp_path):
    directory = tmp_path / "tls"
    material, _ = pki.generated_material(directory, NAMES, NOW)
    old_ca = (directory / pki.CA_CERT).read_text()
    assert material.ca_pem == old_ca and (directory / pki.TRUSTED).read_text() == old_ca
    for step in ("switch", "finish"):
        with pytest.raises(pki.TlsError):
            pki.rotate_ca(directory, step, NOW)

    pki.rotate_ca(directory, "begin", NOW)
    with pytest.raises(pki.TlsError, match="switch it first"):
        pki.rotate_ca(directory, "begin", NOW)
    during, _ = pki.generated_material(directory, NAMES, NOW)
    new_ca = (directory / pki.CA_NEXT_CERT).read_text()
    # Every host trusts both; the server keeps its certificate (still the old CA's).
    assert during.ca_pem == old_ca + new_ca and during.cert_pem == material.cert_pem

    pki.rotate_ca(directory, "switch", NOW)
    switched, done = pki.generated_material(directory, NAMES, NOW)
    assert switched.ca_pem == new_ca + old_ca and switched.cert_pem != material.cert_pem
    assert any("not issued by" in line or "issued the registry certificate" in line for line in done), done
    cert = x509.load_pem_x509_certificate(switched.cert_pem.encode())
    assert cert.issuer == x509.load_pem_x509_certificate(new_ca.encode()).subject
    assert (directory / pki.CA_CERT).read_text() == new_ca
    assert not (directory / pki.CA_NEXT_KEY).exists() and oct((directory / pki.CA_KEY).stat().st_mode & 0o777) == "0o600"

    pki.rotate_ca(directory, "finish", NOW)
    after, _ = pki.generated_material(directory, NAMES, NOW)
    assert after.ca_pem == new_ca and after.cert_pem == switched.cert_pem
    assert (directory / pki.TRUSTED).read_text() == new_ca
    with pytest.raises(pki.TlsError, match="no CA rotation to finish"):
        pki.rotate_ca(directory, "finish", NOW)


def test_a_leaf_rotation_issues_a_new_key_from_the_same_ca(tmp_path):
    directory = tmp_path / "tls"
    before, _ = pki.generated_material(directory, NAMES, NOW)
    pki.rotate_cert(directory)
    after, done = pki.generated_material(directory, NAMES, NOW)
    assert after.key_pem != before.key_pem and after.cert_pem != before.cert_pem and after.ca_pem == before.ca_pem
    assert any("issued the registry certificate" in line for line in done)
    with pytest.raises(pki.TlsError):
        pki.rotate_cert(tmp_path / "empty")

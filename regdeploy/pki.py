"""The registry's TLS material: a CA and a server certificate made on the controller (`cryptography`),
or the operator's own certificate, key and CA, checked before any host is touched.

Generated material lives in `registry_tls_dir` on the controller: the CA is made once and reused
(10 years), the server certificate is re-issued only when `reissue_reason()` says so (its names
changed, it is within 30 days of expiry, or another CA signed it). Keys are 0600 in a 0700 directory
that carries its own `.gitignore`, so it stays out of git wherever the operator keeps it.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, cast

from . import reference
from .lazy import lazy_import

if TYPE_CHECKING:
    from cryptography import exceptions, x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
else:
    # Loaded on first use: a deploy without TLS never pays for `cryptography`.
    x509 = lazy_import("cryptography.x509")
    exceptions = lazy_import("cryptography.exceptions")
    hashes = lazy_import("cryptography.hazmat.primitives.hashes")
    serialization = lazy_import("cryptography.hazmat.primitives.serialization")
    ec = lazy_import("cryptography.hazmat.primitives.asymmetric.ec")

CA_VALIDITY = datetime.timedelta(days=3650)
CERT_VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)

CA_CERT, CA_KEY = "ca.crt", "ca.key"
# A CA rotation (rotate_ca): the next CA beside the current one, then the previous CA (certificate
# only) beside the new current one; TRUSTED is what every host trusts meanwhile: all of them.
CA_NEXT_CERT, CA_NEXT_KEY = "ca-next.crt", "ca-next.key"
CA_PREVIOUS_CERT = "ca-previous.crt"
TRUSTED = "trusted.crt"
ROTATION_STEPS = ("begin", "switch", "finish")
SERVER_CERT, SERVER_KEY = "registry.crt", "registry.key"
# The token service's signing key and its self-signed certificate (the registry's rootcertbundle).
TOKEN_CERT, TOKEN_KEY = "token-signing.crt", "token-signing.key"


class TlsError(ValueError):
    """TLS material regdeploy cannot use; the message says which file and what to do."""


@dataclass(frozen=True)
class TlsMaterial:
    cert_pem: str  # the server certificate, chain after it
    key_pem: str
    ca_pem: str
    generated: bool

    @property
    def ca_sha256(self) -> str:
        return sha256(self.ca_pem)

    @property
    def cert_sha256(self) -> str:
        return sha256(self.cert_pem)

    @property
    def key_sha256(self) -> str:
        return sha256(self.key_pem)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def general_name(name: str) -> x509.GeneralName:
    """A SAN entry: an IP address (bracketed IPv6 as registry_host allows) or a DNS name."""
    address = reference.ip_address(name)
    return x509.IPAddress(address) if address is not None else x509.DNSName(name.lower())


def wanted_names(names: Iterable[str]) -> set[str]:
    return {_show(general_name(n)) for n in names if n}


def _show(entry: x509.GeneralName) -> str:
    return str(entry.value)


def cert_names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {_show(entry) for entry in san if isinstance(entry, (x509.DNSName, x509.IPAddress))}


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, exceptions.InvalidSignature):
        return False


def reissue_reason(cert: x509.Certificate | None, ca: x509.Certificate, names: set[str],
                   now: datetime.datetime) -> str | None:
    """Why the server certificate must be issued anew, or None to keep it (pure: the tests feed it
    certificates and clocks)."""
    if cert is None:
        return "there is no server certificate yet"
    if not _issued_by(cert, ca):
        return "the certificate was not issued by the current CA"
    have = cert_names(cert)
    if have != names:
        added, dropped = sorted(names - have), sorted(have - names)
        change = ", ".join([f"+{n}" for n in added] + [f"-{n}" for n in dropped])
        return f"the names it must cover changed ({change})"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return f"it expires on {cert.not_valid_after_utc:%Y-%m-%d}, within {RENEW_BEFORE.days} days"
    return None


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    """Signatures only; a CA's key also signs certificates and revocation lists."""
    return x509.KeyUsage(digital_signature=True, key_cert_sign=signs_certificates, crl_sign=signs_certificates,
                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                         key_agreement=False, encipher_only=False, decipher_only=False)


def _self_signed(common_name: str, now: datetime.datetime, ca: bool) -> tuple[x509.Certificate,
                                                                            ec.EllipticCurvePrivateKey]:
    """A new key and its self-signed certificate (CA_VALIDITY): a CA, or a signing certificate."""
    key = _key()
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, "regdeploy")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + CA_VALIDITY)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
               .add_extension(_key_usage(signs_certificates=ca), critical=True))
    if ca:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return builder.sign(key, hashes.SHA256()), key


def make_ca(now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return _self_signed("regdeploy registry CA", now, ca=True)


def issue(ca: x509.Certificate, ca_key, names: list[str], now: datetime.datetime,
          validity: datetime.timedelta = CERT_VALIDITY) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate for `names` (the first is its common name), signed by the CA."""
    key = _key()
    entries = [general_name(n) for n in names]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, names[0].strip("[]"))]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + validity)
            .add_extension(x509.SubjectAlternativeName(entries), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def _write(path: Path, text: str, mode: int) -> None:
    """Atomically, created with its final mode (a key is never readable by others, not even briefly)."""
    staged = path.with_name(path.name + ".new")
    staged.unlink(missing_ok=True)
    with os.fdopen(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as handle:
        handle.write(text)
    os.chmod(staged, mode)
    os.replace(staged, path)


def _load_cert(path: Path) -> x509.Certificate | None:
    return x509.load_pem_x509_certificate(path.read_bytes()) if path.is_file() else None


def _prepare(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ignore = directory / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Made by regdeploy: keys and certificates never go into git.\n*\n")


def generated_material(directory: Path, names: list[str], now: datetime.datetime | None = None,
                       ) -> tuple[TlsMaterial, list[str]]:
    """The CA and server certificate in `directory`, made or re-issued as needed; with what was done."""
    now = now or _now()
    _prepare(directory)
    done: list[str] = []
    ca = _load_cert(directory / CA_CERT)
    ca_key_path = directory / CA_KEY
    if ca is None or not ca_key_path.is_file() or ca.not_valid_after_utc - now < RENEW_BEFORE:
        ca, ca_key = make_ca(now)
        _write(ca_key_path, _key_pem(ca_key), 0o600)
        _write(directory / CA_CERT, _cert_pem(ca), 0o644)
        done.append(f"made a new CA in {directory / CA_CERT} (valid until {ca.not_valid_after_utc:%Y-%m-%d})")
    else:
        # The CA regdeploy made (make_ca): an EC key.
        ca_key = cast("ec.EllipticCurvePrivateKey",
                      serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None))
    cert_path = directory / SERVER_CERT
    reason = reissue_reason(_load_cert(cert_path), ca, wanted_names(names), now)
    if reason:
        cert, key = issue(ca, ca_key, names, now)
        _write(directory / SERVER_KEY, _key_pem(key), 0o600)
        _write(cert_path, _cert_pem(cert), 0o644)
        done.append(f"issued the registry certificate {cert_path} for {', '.join(names)} "
                    f"(valid until {cert.not_valid_after_utc:%Y-%m-%d}): {reason}")
    trusted = trusted_pem(directory)
    if not (directory / TRUSTED).is_file() or (directory / TRUSTED).read_text() != trusted:
        _write(directory / TRUSTED, trusted, 0o644)
    material = TlsMaterial(cert_pem=cert_path.read_text(), key_pem=(directory / SERVER_KEY).read_text(),
                           ca_pem=trusted, generated=True)
    return material, done


def trusted_pem(directory: Path) -> str:
    """The CAs every host trusts: the current one and, during a rotation, the next or the previous."""
    return "".join((directory / name).read_text() for name in (CA_CERT, CA_NEXT_CERT, CA_PREVIOUS_CERT)
                   if (directory / name).is_file())


def rotate_cert(directory: Path) -> str:
    """The server certificate regdeploy made, removed so that the next deploy issues a new one (new key,
    same names and CA): a leaf rotation."""
    cert = directory / SERVER_CERT
    if not cert.is_file() or not (directory / CA_KEY).is_file():
        raise TlsError(f"{directory} holds no certificate regdeploy made (registry_tls_cert is yours to replace)")
    cert.unlink()
    (directory / SERVER_KEY).unlink(missing_ok=True)
    return f"removed {cert} and its key: the next deploy issues a new certificate and key and restarts the registry"


def rotate_ca(directory: Path, step: str, now: datetime.datetime | None = None) -> str:
    """One step of a CA rotation with an overlap, each followed by a deploy (what it does then):

    - begin: a next CA beside the current one; every host trusts both, the server keeps its certificate;
    - switch: the next CA becomes the current one (the old one's key is deleted, its certificate kept as
      the previous CA); the server's certificate is re-issued by the new CA, every host trusts both;
    - finish: the previous CA goes; every host trusts the new one only.

    Refused (TlsError, nothing changed) out of order."""
    now = now or _now()
    current, following, previous = (directory / n for n in (CA_CERT, CA_NEXT_CERT, CA_PREVIOUS_CERT))
    if step not in ROTATION_STEPS:
        raise TlsError(f"unknown CA rotation step {step!r}: {', '.join(ROTATION_STEPS)}")
    if not current.is_file() or not (directory / CA_KEY).is_file():
        raise TlsError(f"{directory} holds no CA regdeploy made (deploy with registry_tls first; a CA of your own, "
                       "registry_tls_ca, you rotate yourself)")
    if step == "begin":
        if following.is_file() or previous.is_file():
            raise TlsError(f"a CA rotation is under way in {directory} ({'next' if following.is_file() else 'previous'} "
                           f"CA present): {'switch' if following.is_file() else 'finish'} it first")
        ca, key = make_ca(now)
        _write(directory / CA_NEXT_KEY, _key_pem(key), 0o600)
        _write(following, _cert_pem(ca), 0o644)
        return (f"made the next CA {following}: deploy, so that every host trusts it beside the current one, "
                "then `regdeploy rotate-ca switch`")
    if step == "switch":
        if not following.is_file() or not (directory / CA_NEXT_KEY).is_file():
            raise TlsError(f"no next CA in {directory}: `regdeploy rotate-ca begin` and a deploy come first")
        _write(previous, current.read_text(), 0o644)
        _write(directory / CA_KEY, (directory / CA_NEXT_KEY).read_text(), 0o600)
        _write(current, following.read_text(), 0o644)
        (directory / CA_NEXT_KEY).unlink()
        following.unlink()
        return (f"the next CA is now {current} (the old one kept as {previous}, without its key): deploy, so "
                "that the server's certificate is re-issued by it, then `regdeploy rotate-ca finish`")
    if following.is_file() or not previous.is_file():
        raise TlsError(f"no CA rotation to finish in {directory}" + (" (switch first)" if following.is_file() else ""))
    previous.unlink()
    return f"removed the previous CA {previous}: deploy, so that every host trusts the new CA only"


def given_material(cert_path: str, key_path: str, ca_path: str, registry_host: str) -> TlsMaterial:
    """The operator's own certificate, key and CA, after the checks a TLS handshake would make."""
    problems = [f"{what}={path!r} does not exist on the controller"
                for what, path in (("registry_tls_cert", cert_path), ("registry_tls_key", key_path),
                                   ("registry_tls_ca", ca_path)) if not os.path.isfile(path)]
    if problems:
        raise TlsError("; ".join(problems))
    cert_pem, key_pem, ca_pem = (Path(p).read_text() for p in (cert_path, key_path, ca_path))
    try:
        cert = x509.load_pem_x509_certificates(cert_pem.encode())[0]
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        cas = x509.load_pem_x509_certificates(ca_pem.encode())
    except (ValueError, TypeError) as exc:
        raise TlsError(f"cannot read the TLS files ({exc}); give PEM files, the key unencrypted") from None
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise TlsError(f"registry_tls_key {key_path!r} is not the key of registry_tls_cert {cert_path!r}")
    host = _show(general_name(registry_host))
    if host not in cert_names(cert):
        raise TlsError(f"registry_tls_cert {cert_path!r} does not name {registry_host!r} (it covers: "
                       f"{', '.join(sorted(cert_names(cert))) or 'no subject alternative names'}); Docker would "
                       "refuse it. Issue one that does, or set registry_host to one of its names")
    chain = x509.load_pem_x509_certificates(cert_pem.encode())
    if not any(_issued_by(chain[-1], ca) or chain[-1] == ca for ca in cas):
        raise TlsError(f"registry_tls_ca {ca_path!r} did not issue registry_tls_cert {cert_path!r} (or the last "
                       "certificate of its chain)")
    return TlsMaterial(cert_pem=cert_pem, key_pem=key_pem, ca_pem=ca_pem, generated=False)


@dataclass(frozen=True)
class SigningMaterial:
    cert_pem: str
    key_pem: str


def token_signing_material(directory: Path, now: datetime.datetime | None = None) -> tuple[SigningMaterial, list[str]]:
    """The key the token service signs tokens with and its self-signed certificate, which the registry
    trusts as its `rootcertbundle`: made once in `directory` (beside the CA), made again 30 days
    before it expires; with what was done."""
    now = now or _now()
    _prepare(directory)
    cert_path, key_path = directory / TOKEN_CERT, directory / TOKEN_KEY
    cert = _load_cert(cert_path)
    done = []
    if cert is None or not key_path.is_file() or cert.not_valid_after_utc - now < RENEW_BEFORE:
        cert, key = _self_signed("regdeploy token signing", now, ca=False)
        _write(key_path, _key_pem(key), 0o600)
        _write(cert_path, _cert_pem(cert), 0o644)
        done.append(f"made the token signing key {key_path} (valid until {cert.not_valid_after_utc:%Y-%m-%d})")
    return SigningMaterial(cert_path.read_text(), key_path.read_text()), done


def expiring(pem: str, now: datetime.datetime | None = None,
             within: datetime.timedelta = RENEW_BEFORE) -> list[tuple[str, datetime.datetime]]:
    """(subject, expiry) of every certificate in `pem` that expires within `within` of `now`
    (or already has): what the verify suite warns about."""
    now = now or _now()
    return [(cert.subject.rfc4514_string(), cert.not_valid_after_utc)
            for cert in x509.load_pem_x509_certificates(pem.encode()) if cert.not_valid_after_utc - now < within]

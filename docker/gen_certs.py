"""Make a throwaway certificate authority and a SuperLink certificate signed by it.

Usage: ``python gen_certs.py OUT_DIR [--san NAME ...] [--uid UID]``. Writes ``ca.crt``,
``ca.key``, ``server.crt`` and ``server.key`` (PEM) into ``OUT_DIR``. The server
certificate names ``localhost``, ``127.0.0.1``, ``superlink`` and every ``--san``: add the
DNS name or IP address through which SuperNodes on other machines reach the SuperLink.
Existing files are kept (rerunning is a no-op) unless ``--force`` is given.

Needs only ``cryptography``, which Flower already depends on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_SANS = ("localhost", "127.0.0.1", "superlink")
FILES = ("ca.crt", "ca.key", "server.crt", "server.key")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_certificates(out: Path, sans: list[str], days: int = 365) -> None:
    """Write a CA and a server certificate for ``sans`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("fedleak deployment CA"))
        .issuer_name(_name("fedleak deployment CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(sans[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(_san(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (out / "ca.crt").write_bytes(ca.public_bytes(pem))
    (out / "server.crt").write_bytes(server.public_bytes(pem))
    _write_key(out / "ca.key", ca_key)
    _write_key(out / "server.key", key)


def main() -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--san", action="append", default=[], help="extra DNS name or IP")
    parser.add_argument("--uid", type=int, help="chown the files to this user (containers)")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args()
    extra = [s for s in os.environ.get("FEDLEAK_TLS_SANS", "").replace(",", " ").split() if s]
    if args.force or not all((args.out / f).is_file() for f in FILES):
        make_certificates(args.out, [*DEFAULT_SANS, *args.san, *extra])
        print(f"gen_certs: wrote {', '.join(FILES)} to {args.out}")
    else:
        print(f"gen_certs: {args.out} already holds certificates (--force to replace)")
    if args.uid is not None:
        for name in FILES:
            os.chown(args.out / name, args.uid, args.uid)


if __name__ == "__main__":
    main()

"""Throwaway TLS files for tests, made at test time (never committed): a CA, a server
certificate for 127.0.0.1/localhost and a client certificate signed by it, and a second CA
that signed neither. Made with the `openssl` command (the sandbox is stdlib only, and the
`cryptography` package is not one of the project's dependencies)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class TlsFiles:
    ca: str  # the CA certificate that signed server and client
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str  # a CA that signed neither


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> None:
    _openssl(
        "req", "-x509", *EC, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN=di2siem test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip


def _leaf(folder: Path, name: str, extensions: str) -> None:
    (folder / f"{name}.ext").write_text(extensions)
    _openssl(
        "req", "-new", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr",
        "-subj", f"/CN=di2siem test {name}", cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        cwd=folder,
    )  # fmt: skip


def make_tls_files(folder: Path) -> TlsFiles:
    folder.mkdir(parents=True, exist_ok=True)
    _ca(folder, "ca")
    _ca(folder, "other-ca")
    _leaf(
        folder,
        "server",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        "basicConstraints=CA:FALSE\n",
    )
    _leaf(folder, "client", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    for key in folder.glob("*.key"):
        key.chmod(0o600)
    path = str(folder)
    return TlsFiles(
        f"{path}/ca.pem",
        f"{path}/server.pem",
        f"{path}/server.key",
        f"{path}/client.pem",
        f"{path}/client.key",
        f"{path}/other-ca.pem",
    )

"""Certificates made in the test (trustme): a server CA, a client CA, and a CA nobody trusts."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc
import trustme


@dataclass(frozen=True)
class Pki:
    server_ca: Path  # what clients trust
    server_cert: Path  # for 127.0.0.1 and localhost
    server_key: Path
    client_ca: Path  # what the server trusts (SQZ_TLS_CLIENT_CA_FILE)
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate from a CA the server does not trust
    rogue_key: Path
    other_key: Path  # a key that is not the server certificate's

    def client_context(self, cert: bool = True, rogue: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.server_ca))
        if cert:
            chain, key = (self.rogue_cert, self.rogue_key) if rogue else (self.client_cert, self.client_key)
            context.load_cert_chain(chain, key)
        return context

    def grpc_credentials(self, cert: bool = True, rogue: bool = False) -> grpc.ChannelCredentials:
        if not cert:
            return grpc.ssl_channel_credentials(root_certificates=self.server_ca.read_bytes())
        chain, key = (self.rogue_cert, self.rogue_key) if rogue else (self.client_cert, self.client_key)
        return grpc.ssl_channel_credentials(
            root_certificates=self.server_ca.read_bytes(),
            private_key=key.read_bytes(),
            certificate_chain=chain.read_bytes(),
        )


def make_pki(root: Path) -> Pki:
    server_ca, client_ca, rogue_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("127.0.0.1", "localhost")
    client = client_ca.issue_cert("client.example")
    rogue = rogue_ca.issue_cert("client.example")
    other = server_ca.issue_cert("127.0.0.1")
    paths = {
        "server_ca": server_ca.cert_pem,
        "server_cert": server.cert_chain_pems[0],
        "server_key": server.private_key_pem,
        "client_ca": client_ca.cert_pem,
        "client_cert": client.cert_chain_pems[0],
        "client_key": client.private_key_pem,
        "rogue_cert": rogue.cert_chain_pems[0],
        "rogue_key": rogue.private_key_pem,
        "other_key": other.private_key_pem,
    }
    for name, blob in paths.items():
        blob.write_to_path(str(root / f"{name}.pem"))
    return Pki(**{name: root / f"{name}.pem" for name in paths})

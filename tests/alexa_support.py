"""A certificate chain made at test time (root -> intermediate -> leaf) and signed Alexa
requests, so the Alexa tests prove verification without Amazon or the network."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from connector.alexa_verify import AlexaRequestVerifier

CERT_URL = "https://s3.amazonaws.com/echo.api/echo-api-cert-12.pem"
SKILL_ID = "amzn1.ask.skill.test-skill"
USER_ID = "amzn1.ask.account.TESTUSER"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None,
    now: datetime,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def _leaf(
    key: rsa.RSAPrivateKey,
    issuer: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey,
    *,
    names: list[str],
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("echo-api.amazon.com"))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class TestPKI:
    """A root, an intermediate, and leaves signed by it sharing one key."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __post_init__(self) -> None:
        self.root_key = _key()
        self.root = _ca("Test Root CA", self.root_key, None, self.now)
        self.intermediate_key = _key()
        self.intermediate = _ca(
            "Test Intermediate CA",
            self.intermediate_key,
            (self.root.subject, self.root_key),
            self.now,
        )
        self.leaf_key = _key()
        self.leaf = self.make_leaf()

    def make_leaf(
        self,
        *,
        names: list[str] | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> x509.Certificate:
        return _leaf(
            self.leaf_key,
            self.intermediate,
            self.intermediate_key,
            names=["echo-api.amazon.com"] if names is None else names,
            not_before=not_before or self.now - timedelta(days=1),
            not_after=not_after or self.now + timedelta(days=365),
        )

    def chain_pem(self, leaf: x509.Certificate | None = None) -> bytes:
        certs = [leaf or self.leaf, self.intermediate]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)

    def sign(self, body: bytes, key: rsa.RSAPrivateKey | None = None) -> str:
        signature = (key or self.leaf_key).sign(body, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    def headers(self, body: bytes, url: str = CERT_URL) -> dict[str, str]:
        return {"SignatureCertChainUrl": url, "Signature-256": self.sign(body)}


class FakeFetcher:
    """Serves PEM chains by URL and counts downloads (to prove the cache)."""

    def __init__(self, chains: dict[str, bytes]) -> None:
        self.chains = chains
        self.calls: list[str] = []

    async def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        return self.chains[url]


def verifier_for(
    pki: TestPKI, chain: bytes | None = None, **kwargs: Any
) -> tuple[AlexaRequestVerifier, FakeFetcher]:
    fetcher = FakeFetcher({CERT_URL: chain if chain is not None else pki.chain_pem()})
    kwargs.setdefault("trusted_roots", [pki.root])
    return AlexaRequestVerifier(fetch=fetcher, **kwargs), fetcher


def alexa_request(
    request: dict[str, Any],
    *,
    user: str = USER_ID,
    timestamp: float | None = None,
    attributes: dict[str, Any] | None = None,
    skill_id: str = SKILL_ID,
) -> dict[str, Any]:
    """A custom-skill request envelope around ``request`` (type, intent, ...)."""
    stamp = datetime.fromtimestamp(timestamp or time.time(), tz=timezone.utc)
    return {
        "version": "1.0",
        "session": {
            "new": attributes is None,
            "sessionId": "amzn1.echo-api.session.test",
            "application": {"applicationId": skill_id},
            "attributes": attributes or {},
            "user": {"userId": user},
        },
        "context": {
            "System": {
                "application": {"applicationId": skill_id},
                "user": {"userId": user},
            }
        },
        "request": {
            "requestId": f"amzn1.echo-api.request.{uuid.uuid4()}",
            "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "locale": "en-US",
            **request,
        },
    }


def launch(**kwargs: Any) -> dict[str, Any]:
    return alexa_request({"type": "LaunchRequest"}, **kwargs)


def intent(name: str, **kwargs: Any) -> dict[str, Any]:
    return alexa_request({"type": "IntentRequest", "intent": {"name": name, "slots": {}}}, **kwargs)


def said(words: str, **kwargs: Any) -> dict[str, Any]:
    slots = {"utterance": {"name": "utterance", "value": words}}
    return alexa_request(
        {"type": "IntentRequest", "intent": {"name": "CatchAllIntent", "slots": slots}}, **kwargs
    )


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()

"""Checks that an Alexa skill request really comes from Amazon, as Amazon requires.

Amazon's rules for a skill hosted as a web service ("Verifying that the request was
sent by Alexa"):

1. the ``SignatureCertChainUrl`` header is an https URL on ``s3.amazonaws.com`` (any
   case), port 443 if a port is given, whose normalised path starts with ``/echo.api/``;
2. the PEM chain at that URL: the leaf is within its validity, names
   ``echo-api.amazon.com`` in its subject alternative names, and the chain leads to a
   trusted root;
3. the ``Signature-256`` header is a base64 RSA PKCS#1 v1.5 SHA-256 signature over the
   raw body, made with the leaf's key;
4. ``request.timestamp`` is within 150 s of now.

Pure apart from the injected certificate fetcher and clock, so tests build their own
chain and never use the network. Every failure raises :class:`VerificationError` with a
reason fit for the 400 answer and a log line (never the body or a signature).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import posixpath
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import ExtensionOID

logger = logging.getLogger(__name__)

CERT_URL_HEADER = "SignatureCertChainUrl"
SIGNATURE_HEADER = "Signature-256"
CERT_HOST = "s3.amazonaws.com"
CERT_PATH_PREFIX = "/echo.api/"
SIGNING_NAME = "echo-api.amazon.com"
TIMESTAMP_TOLERANCE_SECONDS = 150.0
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MAX_CHAIN_BYTES = 64 * 1024  # Amazon's chain is a few kB; more is not a chain

# Fetches the PEM chain at a (checked) URL. Injected: tests hand in their own chain.
CertificateFetcher = Callable[[str], Awaitable[bytes]]
Clock = Callable[[], float]


class VerificationError(Exception):
    """The request is not provably from Alexa; ``reason`` says which rule failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_cert_chain_url(url: str) -> None:
    """Amazon's URL rules for ``SignatureCertChainUrl``; raises when one is broken."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise VerificationError("the certificate chain URL is malformed") from error
    if parts.scheme.lower() != "https":
        raise VerificationError("the certificate chain URL is not https")
    if (parts.hostname or "").lower() != CERT_HOST:
        raise VerificationError(f"the certificate chain URL's host is not {CERT_HOST}")
    if port is not None and port != 443:
        raise VerificationError("the certificate chain URL's port is not 443")
    # Normalise first, so "/echo.api/../x" (which leaves /echo.api/) is refused; the path
    # is case-sensitive, so "/ECHO.API/" is refused too.
    path = posixpath.normpath(unquote(parts.path or "/"))
    if not (path + "/").startswith(CERT_PATH_PREFIX) or path == CERT_PATH_PREFIX.rstrip("/"):
        raise VerificationError(f"the certificate chain URL's path is not under {CERT_PATH_PREFIX}")


def load_trusted_roots(bundle: Path | None = None) -> list[x509.Certificate]:
    """The system CA bundle (Debian's), or certifi's when the system has none."""
    path = bundle or SYSTEM_CA_BUNDLE
    if not path.exists() and bundle is None:
        try:
            import certifi
        except ImportError as error:
            raise FileNotFoundError(f"no CA bundle at {path} and certifi is missing") from error
        path = Path(certifi.where())
    with warnings.catch_warnings():
        # Debian's bundle holds an old root with a negative serial; cryptography warns
        # about it on every load, and it is the distribution's choice to trust it.
        warnings.simplefilter("ignore")
        return x509.load_pem_x509_certificates(path.read_bytes())


async def fetch_over_https(url: str) -> bytes:
    """The production fetcher: GET the chain, bounded in time and size."""
    import httpx

    async with httpx.AsyncClient(timeout=3.0, follow_redirects=False) as client:
        response = await client.get(url)
    response.raise_for_status()
    if len(response.content) > MAX_CHAIN_BYTES:
        raise VerificationError("the certificate chain is too large")
    return response.content


class AlexaRequestVerifier:
    """Verifies signed Alexa requests; caches each certificate chain by URL.

    ``trusted_roots``: None means the system CA bundle, loaded on first use.
    ``skill_id``: when set, the request must name this application id.
    """

    def __init__(
        self,
        *,
        fetch: CertificateFetcher = fetch_over_https,
        trusted_roots: Sequence[x509.Certificate] | None = None,
        skill_id: str | None = None,
        clock: Clock = time.time,
        tolerance_seconds: float = TIMESTAMP_TOLERANCE_SECONDS,
    ) -> None:
        self._fetch = fetch
        self._roots = list(trusted_roots) if trusted_roots is not None else None
        self._skill_id = skill_id
        self._clock = clock
        self._tolerance = tolerance_seconds
        # URL -> parsed chain. Validity is re-checked on every request, so a cached chain
        # that has since expired is refused (and re-fetched next time).
        self._chains: dict[str, list[x509.Certificate]] = {}

    async def verify(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """The parsed request when every rule holds; else raises :class:`VerificationError`."""
        url = _header(headers, CERT_URL_HEADER)
        signature_b64 = _header(headers, SIGNATURE_HEADER)
        check_cert_chain_url(url)
        try:
            signature = base64.b64decode(signature_b64, validate=True)
        except (binascii.Error, ValueError) as error:
            raise VerificationError(f"the {SIGNATURE_HEADER} header is not base64") from error
        leaf = await self._verified_leaf(url)
        public_key = leaf.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise VerificationError("the signing certificate's key is not RSA")
        try:
            public_key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as error:
            raise VerificationError("the signature does not match the body") from error
        request = parse_body(body)
        self._check_timestamp(request)
        check_application_id(request, self._skill_id)
        return request

    async def _verified_leaf(self, url: str) -> x509.Certificate:
        chain = self._chains.get(url)
        if chain is None:
            chain = await self._download(url)
        now = datetime.fromtimestamp(self._clock(), tz=timezone.utc)
        try:
            leaf = check_chain(chain, self._trusted_roots(), now)
        except VerificationError:
            self._chains.pop(url, None)
            raise
        self._chains[url] = chain
        return leaf

    async def _download(self, url: str) -> list[x509.Certificate]:
        try:
            pem = await self._fetch(url)
        except VerificationError:
            raise
        except Exception as error:
            raise VerificationError(
                f"the certificate chain could not be downloaded ({type(error).__name__})"
            ) from error
        try:
            chain = x509.load_pem_x509_certificates(pem)
        except ValueError as error:
            raise VerificationError("the certificate chain is not valid PEM") from error
        return chain

    def _trusted_roots(self) -> list[x509.Certificate]:
        if self._roots is None:
            self._roots = load_trusted_roots()
        return self._roots

    def _check_timestamp(self, request: Mapping[str, Any]) -> None:
        raw = (request.get("request") or {}).get("timestamp")
        if not isinstance(raw, str):
            raise VerificationError("request.timestamp is missing")
        try:
            stamp = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as error:
            raise VerificationError("request.timestamp is not an ISO 8601 time") from error
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        if abs(self._clock() - stamp.timestamp()) > self._tolerance:
            raise VerificationError(
                f"request.timestamp is more than {self._tolerance:g} s from now"
            )


def check_chain(
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
) -> x509.Certificate:
    """The leaf (first) certificate, once it and its chain hold at ``now``; else raises."""
    if not chain:
        raise VerificationError("the certificate chain is empty")
    leaf = chain[0]
    # The explicit checks give precise reasons; the path validation below enforces the
    # same and more (signatures, CA constraints, validity of every certificate).
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise VerificationError("the signing certificate is expired or not yet valid")
    if SIGNING_NAME not in _dns_names(leaf):
        raise VerificationError(f"the signing certificate is not issued to {SIGNING_NAME}")
    if not roots:
        raise VerificationError("no trusted root certificates are configured")
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(roots)))
        .time(now)
        .build_server_verifier(verification.DNSName(SIGNING_NAME))
    )
    try:
        verifier.verify(leaf, list(chain[1:]))
    except verification.VerificationError as error:
        raise VerificationError("the certificate chain does not lead to a trusted root") from error
    return leaf


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return []
    return [name.lower() for name in san.value.get_values_for_type(x509.DNSName)]


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:  # plain dicts in tests; Sanic's headers are case-insensitive already
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    if not value:
        raise VerificationError(f"the {name} header is missing")
    return value


# Where Alexa sends an object, a request must have an object or nothing: the channel reads
# these with ``(... or {}).get(...)``.
_OBJECTS = (
    ("session",),
    ("session", "application"),
    ("session", "user"),
    ("session", "attributes"),
    ("context",),
    ("context", "System"),
    ("context", "System", "application"),
    ("context", "System", "user"),
    ("request", "intent"),
)


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError) as error:
        # ValueError: not JSON, not UTF-8, or an integer over Python's 4300 digits;
        # RecursionError: nested deeper than Python's parser goes.
        raise VerificationError("the body is not valid JSON") from error
    if not isinstance(parsed, dict) or not isinstance(parsed.get("request"), dict):
        raise VerificationError("the body is not an Alexa request")
    for path in _OBJECTS:
        value: Any = parsed
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None and not isinstance(value, dict):
            raise VerificationError(f"the body is not an Alexa request ({'.'.join(path)})")
    name = (parsed["request"].get("intent") or {}).get("name")
    if name is not None and not isinstance(name, str):
        raise VerificationError("the body is not an Alexa request (request.intent.name)")
    return parsed


def application_ids(request: Mapping[str, Any]) -> set[str]:
    """Every application id the request names (session and context may both carry it)."""
    found: set[str] = set()
    session_app = ((request.get("session") or {}).get("application") or {}).get("applicationId")
    context_app = (
        ((request.get("context") or {}).get("System") or {}).get("application") or {}
    ).get("applicationId")
    for value in (session_app, context_app):
        if isinstance(value, str) and value:
            found.add(value)
    return found


def check_application_id(request: Mapping[str, Any], skill_id: str | None) -> None:
    """With ``skill_id`` set, every id the request names must be it (and one must exist)."""
    if not skill_id:
        return
    named = application_ids(request)
    if not named or named != {skill_id}:
        raise VerificationError("the request is for another skill")

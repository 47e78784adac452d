"""Alexa request verification against a certificate chain made here: every Amazon rule
accepts a good request and rejects the request that breaks it."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from connector.alexa_verify import VerificationError, check_cert_chain_url
from tests.alexa_support import (
    CERT_URL,
    SKILL_ID,
    TestPKI,
    encode,
    launch,
    said,
    verifier_for,
)


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return TestPKI()


async def test_a_correctly_signed_request_is_accepted(pki: TestPKI) -> None:
    verifier, _ = verifier_for(pki)
    body = encode(said("turn on express mode on my fridge"))
    request = await verifier.verify(pki.headers(body), body)
    assert request["request"]["intent"]["slots"]["utterance"]["value"].startswith("turn on")


async def test_the_chain_is_downloaded_once_per_url(pki: TestPKI) -> None:
    verifier, fetcher = verifier_for(pki)
    for _ in range(3):
        body = encode(launch())
        await verifier.verify(pki.headers(body), body)
    assert fetcher.calls == [CERT_URL]


@pytest.mark.parametrize(
    "url",
    [
        "https://s3.amazonaws.com/echo.api/echo-api-cert.pem",
        "https://s3.amazonaws.com:443/echo.api/echo-api-cert.pem",
        "https://S3.AMAZONAWS.COM/echo.api/echo-api-cert.pem",
        "https://s3.amazonaws.com/echo.api/../echo.api/echo-api-cert.pem",
    ],
)
def test_amazons_valid_url_examples_pass(url: str) -> None:
    check_cert_chain_url(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://s3.amazonaws.com/echo.api/echo-api-cert.pem", "not https"),
        ("https://notamazon.com/echo.api/echo-api-cert.pem", "host"),
        ("https://s3.amazonaws.com.evil.example/echo.api/cert.pem", "host"),
        ("https://s3.amazonaws.com/EcHo.aPi/echo-api-cert.pem", "path"),
        ("https://s3.amazonaws.com/invalid.path/echo-api-cert.pem", "path"),
        ("https://s3.amazonaws.com/echo.api/../x", "path"),
        ("https://s3.amazonaws.com:8443/echo.api/echo-api-cert.pem", "port"),
    ],
)
async def test_a_bad_certificate_url_is_rejected_before_any_download(
    pki: TestPKI, url: str, reason: str
) -> None:
    verifier, fetcher = verifier_for(pki)
    fetcher.chains[url] = pki.chain_pem()  # would verify, were the URL allowed
    body = encode(launch())
    with pytest.raises(VerificationError, match=reason):
        await verifier.verify(pki.headers(body, url=url), body)
    assert fetcher.calls == []


async def test_an_expired_leaf_is_rejected(pki: TestPKI) -> None:
    expired = pki.make_leaf(
        not_before=pki.now - timedelta(days=60), not_after=pki.now - timedelta(seconds=1)
    )
    verifier, _ = verifier_for(pki, pki.chain_pem(expired))
    body = encode(launch())
    with pytest.raises(VerificationError, match="expired"):
        await verifier.verify(pki.headers(body), body)


async def test_a_leaf_without_the_echo_api_name_is_rejected(pki: TestPKI) -> None:
    for names in ([], ["www.example.com"]):
        verifier, _ = verifier_for(pki, pki.chain_pem(pki.make_leaf(names=names)))
        body = encode(launch())
        with pytest.raises(VerificationError, match=r"echo-api\.amazon\.com"):
            await verifier.verify(pki.headers(body), body)


async def test_a_chain_to_an_untrusted_root_is_rejected(pki: TestPKI) -> None:
    stranger = TestPKI()  # same shape, another root
    verifier, _ = verifier_for(pki, trusted_roots=[stranger.root])
    body = encode(launch())
    with pytest.raises(VerificationError, match="trusted root"):
        await verifier.verify(pki.headers(body), body)


async def test_a_chain_missing_its_intermediate_is_rejected(pki: TestPKI) -> None:
    from cryptography.hazmat.primitives import serialization

    verifier, _ = verifier_for(pki, pki.leaf.public_bytes(serialization.Encoding.PEM))
    body = encode(launch())
    with pytest.raises(VerificationError, match="trusted root"):
        await verifier.verify(pki.headers(body), body)


async def test_a_signature_by_another_key_is_rejected(pki: TestPKI) -> None:
    verifier, _ = verifier_for(pki)
    body = encode(launch())
    headers = {**pki.headers(body), "Signature-256": pki.sign(body, key=pki.intermediate_key)}
    with pytest.raises(VerificationError, match="signature"):
        await verifier.verify(headers, body)


async def test_a_body_changed_after_signing_is_rejected(pki: TestPKI) -> None:
    verifier, _ = verifier_for(pki)
    body = encode(said("what devices do I have"))
    headers = pki.headers(body)
    tampered = body.replace(b"what devices do I have", b"start the oven now please")
    with pytest.raises(VerificationError, match="signature"):
        await verifier.verify(headers, tampered)


async def test_a_signature_that_is_not_base64_is_rejected(pki: TestPKI) -> None:
    verifier, _ = verifier_for(pki)
    body = encode(launch())
    with pytest.raises(VerificationError, match="base64"):
        await verifier.verify({**pki.headers(body), "Signature-256": "not base64!"}, body)


@pytest.mark.parametrize("age", [151.0, -151.0])
async def test_a_timestamp_more_than_150_seconds_off_is_rejected(pki: TestPKI, age: float) -> None:
    verifier, _ = verifier_for(pki)
    body = encode(launch(timestamp=time.time() - age))
    with pytest.raises(VerificationError, match="timestamp"):
        await verifier.verify(pki.headers(body), body)


async def test_a_timestamp_149_seconds_old_is_accepted(pki: TestPKI) -> None:
    verifier, _ = verifier_for(pki)
    body = encode(launch(timestamp=time.time() - 149))
    await verifier.verify(pki.headers(body), body)


@pytest.mark.parametrize("missing", ["SignatureCertChainUrl", "Signature-256"])
async def test_a_missing_header_is_rejected(pki: TestPKI, missing: str) -> None:
    verifier, fetcher = verifier_for(pki)
    body = encode(launch())
    headers = {k: v for k, v in pki.headers(body).items() if k != missing}
    with pytest.raises(VerificationError, match=f"{missing} header is missing"):
        await verifier.verify(headers, body)
    assert fetcher.calls == []


async def test_headers_match_whatever_their_case(pki: TestPKI) -> None:
    verifier, _ = verifier_for(pki)
    body = encode(launch())
    headers = {k.lower(): v for k, v in pki.headers(body).items()}
    await verifier.verify(headers, body)


async def test_a_chain_that_cannot_be_downloaded_is_rejected(pki: TestPKI) -> None:
    async def unreachable(url: str) -> bytes:
        raise OSError("connection refused")

    verifier, _ = verifier_for(pki)
    verifier._fetch = unreachable
    body = encode(launch())
    with pytest.raises(VerificationError, match="could not be downloaded"):
        await verifier.verify(pki.headers(body), body)


async def test_the_skill_id_is_checked_when_configured(pki: TestPKI) -> None:
    verifier, _ = verifier_for(pki, skill_id=SKILL_ID)
    ours = encode(launch())
    await verifier.verify(pki.headers(ours), ours)
    theirs = encode(launch(skill_id="amzn1.ask.skill.someone-else"))
    with pytest.raises(VerificationError, match="another skill"):
        await verifier.verify(pki.headers(theirs), theirs)

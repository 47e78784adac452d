"""Token encryption: keys, rotation, failure modes and key-file handling."""

from __future__ import annotations

import secrets
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from assistant.storage.crypto import (
    TokenCipher,
    TokenDecryptError,
    TokenKeyError,
    load_or_create_key_file,
)
from tests.db_fixtures import make_settings

TOKEN = f"emp-token-{secrets.token_hex(8)}"  # made up per run; never a real token


def test_round_trip_and_ciphertext_hides_token() -> None:
    cipher = TokenCipher([TokenCipher.generate_key()])
    ciphertext = cipher.encrypt(TOKEN)
    assert isinstance(ciphertext, bytes)
    assert TOKEN.encode() not in ciphertext
    assert cipher.decrypt(ciphertext) == TOKEN
    # Fernet is randomized: the same token never encrypts to the same bytes twice.
    assert cipher.encrypt(TOKEN) != ciphertext


def test_wrong_key_raises_typed_error() -> None:
    ciphertext = TokenCipher([TokenCipher.generate_key()]).encrypt(TOKEN)
    with pytest.raises(TokenDecryptError):
        TokenCipher([TokenCipher.generate_key()]).decrypt(ciphertext)


@pytest.mark.parametrize("garbage", [b"", b"not a fernet token", b"\x00\xff" * 40])
def test_corrupt_ciphertext_raises_typed_error(garbage: bytes) -> None:
    with pytest.raises(TokenDecryptError):
        TokenCipher([TokenCipher.generate_key()]).decrypt(garbage)


def test_key_rotation_old_key_still_decrypts() -> None:
    old, new = TokenCipher.generate_key(), TokenCipher.generate_key()
    stored = TokenCipher([old]).encrypt(TOKEN)

    rotated_cipher = TokenCipher.from_string(f"{new},{old}")
    assert rotated_cipher.decrypt(stored) == TOKEN
    # New tokens are encrypted with the new (first) key only.
    fresh = rotated_cipher.encrypt(TOKEN)
    assert TokenCipher([new]).decrypt(fresh) == TOKEN
    with pytest.raises(TokenDecryptError):
        TokenCipher([old]).decrypt(fresh)
    # rotate() re-encrypts old ciphertext so the old key can be retired.
    assert TokenCipher([new]).decrypt(rotated_cipher.rotate(stored)) == TOKEN


def test_repr_hides_keys() -> None:
    key = TokenCipher.generate_key()
    cipher = TokenCipher.from_string(f"{key}, {TokenCipher.generate_key()}")
    assert key not in repr(cipher)
    assert key not in str(cipher)
    assert "2 key" in repr(cipher)


def test_invalid_key_error_does_not_echo_the_key() -> None:
    with pytest.raises(TokenKeyError, match="TOKEN_ENCRYPTION_KEY") as caught:
        TokenCipher.from_string("definitely-not-a-fernet-key")
    assert "definitely-not-a-fernet-key" not in str(caught.value)
    with pytest.raises(TokenKeyError):
        TokenCipher.from_string(" , ")


def test_from_settings_prefers_configured_key(tmp_path: Path) -> None:
    key = TokenCipher.generate_key()
    settings = make_settings(tmp_path, TOKEN_ENCRYPTION_KEY=key)
    cipher = TokenCipher.from_settings(settings)
    assert TokenCipher([key]).decrypt(cipher.encrypt(TOKEN)) == TOKEN
    assert not settings.token_key_file.exists()


def test_from_settings_demo_mode_creates_private_key_file_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert settings.token_encryption_key is None
    first = TokenCipher.from_settings(settings)
    path = settings.token_key_file
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A second start reuses the key: tokens stored earlier stay readable.
    second = TokenCipher.from_settings(settings)
    assert second.decrypt(first.encrypt(TOKEN)) == TOKEN
    assert not list(path.parent.glob("*.tmp"))


def test_from_settings_outside_demo_mode_requires_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, DEMO_MODE="0", THINQ_SERVICE_ID="svc", THINQ_SERVICE_KEY="k")
    with pytest.raises(TokenKeyError, match="TOKEN_ENCRYPTION_KEY is required"):
        TokenCipher.from_settings(settings)
    assert not settings.token_key_file.exists()


def test_concurrent_key_file_creation_agrees_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "state" / "token-encryption.key"
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = set(pool.map(lambda _: load_or_create_key_file(path), range(16)))
    assert len(keys) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

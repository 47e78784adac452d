"""Encryption of ThinQ access tokens at rest.

Tokens are encrypted with Fernet (AES-128-CBC + HMAC-SHA256). Several keys may be
configured, comma-separated: the first encrypts, every one of them decrypts, so a
key can be rotated by putting the new key first and dropping the old one once
:meth:`TokenCipher.rotate` (or a relink) has re-encrypted the stored tokens.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

if TYPE_CHECKING:
    from assistant.settings import Settings

logger = logging.getLogger(__name__)

ENV_NAME = "TOKEN_ENCRYPTION_KEY"
_GENERATE_HINT = (
    "generate one with: python -c "
    "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


class TokenKeyError(ValueError):
    """The token encryption key is missing or malformed (a configuration problem)."""


class TokenDecryptError(Exception):
    """A stored token could not be decrypted: wrong/rotated-away key or corrupt data."""


def _split_keys(raw: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", raw) if part]


def _build_fernets(keys: Iterable[str | bytes], source: str) -> list[Fernet]:
    fernets = []
    for index, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError) as error:
            # Never echo the key itself.
            raise TokenKeyError(
                f"key #{index} in {source} is not a valid Fernet key "
                f"(32 url-safe base64-encoded bytes); {_GENERATE_HINT}"
            ) from error
    if not fernets:
        raise TokenKeyError(f"{source} contains no key; {_GENERATE_HINT}")
    return fernets


class TokenCipher:
    """Encrypts tokens with the first key; decrypts with any configured key."""

    def __init__(self, keys: Iterable[str | bytes], *, source: str = "the key list") -> None:
        fernets = _build_fernets(keys, source)
        self._key_count = len(fernets)
        self._fernet = MultiFernet(fernets)

    def __repr__(self) -> str:
        return f"TokenCipher(<{self._key_count} key(s) hidden>)"

    __str__ = __repr__

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode("ascii")

    @classmethod
    def from_string(cls, raw: str, *, source: str = ENV_NAME) -> TokenCipher:
        """Keys separated by commas (or whitespace), newest first."""
        return cls(_split_keys(raw), source=source)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCipher:
        """The cipher the configuration asks for.

        ``settings.token_encryption_key`` wins when set. Otherwise, in demo mode only,
        a key is loaded from (or created in) ``settings.token_key_file``. Outside demo
        mode a missing key is an error: a generated key on a server's disk would make
        every token unreadable the day that disk is replaced.
        """
        if settings.token_encryption_key:
            return cls.from_string(settings.token_encryption_key, source=ENV_NAME)
        if settings.demo_mode:
            path = Path(settings.token_key_file)
            return cls.from_string(load_or_create_key_file(path), source=str(path))
        raise TokenKeyError(
            f"{ENV_NAME} is required outside demo mode (comma-separated Fernet keys, "
            f"newest first); {_GENERATE_HINT}"
        )

    def encrypt(self, token: str) -> bytes:
        if not isinstance(token, str):
            raise TypeError(f"token must be str, got {type(token).__name__}")
        return self._fernet.encrypt(token.encode("utf-8"))

    def decrypt(self, ciphertext: bytes) -> str:
        if isinstance(ciphertext, memoryview):
            ciphertext = ciphertext.tobytes()
        try:
            return self._fernet.decrypt(ciphertext).decode("utf-8")
        except (InvalidToken, TypeError, UnicodeDecodeError) as error:
            raise TokenDecryptError(
                "stored token cannot be decrypted with the configured key(s); "
                f"was {ENV_NAME} changed without keeping the old key? The account must be "
                "linked again"
            ) from error

    def rotate(self, ciphertext: bytes) -> bytes:
        """Re-encrypt ``ciphertext`` with the first (newest) key."""
        if isinstance(ciphertext, memoryview):
            ciphertext = ciphertext.tobytes()
        try:
            return self._fernet.rotate(ciphertext)
        except (InvalidToken, TypeError) as error:
            raise TokenDecryptError("stored token cannot be decrypted for rotation") from error


def load_or_create_key_file(path: Path) -> str:
    """Read the demo key file, creating it (mode 0600, atomically) if missing."""
    path = Path(path)
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            logger.warning(
                "token key file %s is readable by other users (mode %o); chmod 600 it",
                path,
                mode,
            )
        return path.read_text(encoding="ascii").strip()

    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode("ascii")
    # Write a private temporary file, then hard-link it into place: link() fails if
    # another process got there first, and a reader never sees a half-written key.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race; use its key
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text(encoding="ascii").strip()

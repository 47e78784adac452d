"""Random demo credentials shared by the simulator and the assistant in demo mode.

They are generated once per machine into the state directory (mode 0600) so
that nothing secret-looking is committed and both processes agree without
any configuration. They only ever open the local simulator.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

FILE_NAME = "demo-credentials.json"


@dataclass(frozen=True)
class DemoCredentials:
    service_id: str
    service_key: str = field(repr=False)
    demo_token: str = field(repr=False)


def _jwt_like_service_key(service_id: str) -> str:
    """A key shaped like LG's (header.payload.signature); the simulator only compares it."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(b'{"typ":"JWT","alg":"HS256"}')
    payload = b64(json.dumps({"serviceId": service_id, "tokenSeed": secrets.token_hex(8)}).encode())
    return f"{header}.{payload}.{b64(secrets.token_bytes(32))}"


def generate() -> DemoCredentials:
    service_id = secrets.token_hex(12)  # 24 hex characters, like LG's example
    return DemoCredentials(
        service_id=service_id,
        service_key=_jwt_like_service_key(service_id),
        demo_token=secrets.token_hex(48),  # 96 hex characters, like an EMP token
    )


def load_or_create_demo_credentials(state_dir: Path) -> DemoCredentials:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILE_NAME
    if path.exists():
        data = json.loads(path.read_text())
        return DemoCredentials(data["service_id"], data["service_key"], data["demo_token"])
    creds = generate()
    # Write to a temporary file and rename, so a concurrent reader never sees half a file.
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {
                "service_id": creds.service_id,
                "service_key": creds.service_key,
                "demo_token": creds.demo_token,
            },
            handle,
        )
    try:
        os.link(tmp, path)  # fails if another process won the race; theirs is kept
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return load_or_create_demo_credentials(state_dir)


def demo_oauth_client_secret(service_key: str) -> str:
    """The demo OAuth client secret at the simulator's membership-login stand-in.

    Derived from the machine's random demo service key, so the simulator (which checks
    it) and the assistant (which presents it) agree without configuration.
    """
    return hashlib.sha256(f"lg-oauth-client/{service_key}".encode()).hexdigest()


@dataclass(frozen=True)
class DemoBeconCredentials:
    """The demo BECON Connect service: what the simulator accepts and the assistant sends."""

    service_id: str
    service_key: str = field(repr=False)
    symmetric_key: str = field(repr=False)


def demo_becon_credentials(service_key: str) -> DemoBeconCredentials:
    """The demo BECON service id, service key and symmetric key.

    Derived from the machine's random demo (ThinQ) service key like the OAuth client
    secret, so the simulator and the assistant agree without configuration.
    """

    def derived(purpose: str) -> str:
        return hashlib.sha256(f"{purpose}/{service_key}".encode()).hexdigest()

    return DemoBeconCredentials(
        service_id=derived("lg-becon-service-id")[:24],
        service_key=derived("lg-becon-service-key"),
        symmetric_key=derived("lg-becon-symmetric-key"),
    )

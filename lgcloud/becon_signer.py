"""The signature a BECON Connect token request carries.

LG documents only that the signature is "created by encrypting the symmetric key and
server time value ... through a specific algorithm", the algorithm being given to each
partner privately by an LG representative (becon-connect-call-sequence.txt). So the
signer is pluggable: :data:`Signer` takes the server time string exactly as
``GET /auth/servertime`` returned it and the partner's symmetric key (bytes), and
returns the signature text to send.

:func:`hmac_sha256_signer` is OUR ASSUMPTION and the simulator's rule: HMAC-SHA256 over
the UTF-8 server time string, keyed with the symmetric key, as lowercase hex. Replace
it (``BeconClient(signer=...)``) with LG's algorithm once known.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

Signer = Callable[[str, bytes], str]


def hmac_sha256_signer(server_time: str, symmetric_key: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of ``server_time`` (UTF-8) under ``symmetric_key``."""
    return hmac.new(symmetric_key, server_time.encode("utf-8"), hashlib.sha256).hexdigest()

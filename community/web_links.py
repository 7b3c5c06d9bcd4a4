"""Web-gallery links: a guild's token is `guild.nonce.signature`, signed with a key kept in the data folder.

The nonce is stored per guild in the community store (community/store.py), so a link can be revoked or renewed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path


def sign_token(guild: str, nonce: str, secret: bytes) -> str:
    """`guild.nonce.signature`: the signature is an HMAC-SHA256 of the first two, so nobody can make one."""
    digest = hmac.new(secret, f"{guild}.{nonce}".encode(), hashlib.sha256).digest()
    return f"{guild}.{nonce}.{base64.urlsafe_b64encode(digest[:18]).decode()}"


def web_secret(data_dir: Path) -> bytes:
    """The key that signs web-gallery links (made once, readable by this user only)."""
    path = data_dir / "web-secret"
    if not path.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_bytes()
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(32))
    return path.read_bytes()

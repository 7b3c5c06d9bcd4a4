"""Who calls: HTTP Basic as A1111's `--api-auth`, each user a caller of its own (`api:<user>`).

Without credentials configured every request is `api:local` (the API then listens only on loopback).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from core.errors import InvalidRequest

LOCAL_CALLER = "api:local"
_basic = HTTPBasic(auto_error=False)


def parse_credentials(text: str | None) -> dict[str, str]:
    """A1111's `--api-auth user:password[,user2:password2]`."""
    credentials = {}
    for pair in (text or "").split(","):
        if not pair.strip():
            continue
        user, sep, password = pair.strip().partition(":")
        if not sep or not user or not password:
            raise InvalidRequest("api-auth", "write user:password[,user2:password2]")
        credentials[user] = password
    return credentials


def caller(request: Request, credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)]) -> str:
    """The caller of a request, checked against the service's credentials (401 as A1111 answers)."""
    known: dict[str, str] = request.app.state.service.credentials
    if not known:
        return LOCAL_CALLER
    if credentials is not None:
        expected = known.get(credentials.username)
        if expected is not None and secrets.compare_digest(credentials.password.encode(), expected.encode()):
            return f"api:{credentials.username}"
    raise HTTPException(401, "Incorrect username or password", headers={"WWW-Authenticate": "Basic"})


Caller = Annotated[str, Depends(caller)]

"""Tokens for tests: JWTs signed with the secret every test server is given."""

from __future__ import annotations

from typing import Any

import jwt

SECRET = "test-secret-that-is-long-enough-for-hs256!"


def make_token(sub: str = "ada", secret: str = SECRET, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, "name": sub.title()}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")

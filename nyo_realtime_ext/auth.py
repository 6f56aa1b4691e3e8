"""Who a client is (JWT through PyJWT, a `verify_token` hook, or Jupyter's identity
provider) and what it may do on a private channel.

The identity always comes from here, never from a frame: a client can name
channels and say things, but not who it is.
"""

from __future__ import annotations

import fnmatch
import hmac
import logging
from collections.abc import Callable, Mapping
from typing import Any

import jwt

from .colors import is_color
from .constants import KINDS, PERSON
from .hooks import HookFailed, call_inline, describe, resolve_hook
from .models import ChannelRecord, Identity
from .profiles import cleaned_name, refused_character

log = logging.getLogger(__name__)

_HOOK_FAILED = "the token could not be verified (the server's hook failed)"


class AuthError(Exception):
    """The credentials were refused; the message says why, without secrets."""


class TokenExpired(AuthError):
    pass


class Authenticator:
    def __init__(self, config: Any) -> None:
        self.config = config
        self._verify_hook = resolve_hook(config.verify_token)
        self._authorize_hook = resolve_hook(config.authorize)
        algorithms = [a for a in config.jwt_algorithms if a.lower() != "none"]
        self.algorithms = algorithms
        self._trusted: list[tuple[bytes, Identity]] = []

    def trust_token(self, token: str, identity: Identity) -> None:
        """Accept one opaque `token` as `identity`, besides JWTs and the hook.

        For the Jupyter extension's own kernels (`kernel_env.py`): the server
        mints a random secret for its user and hands it to the kernels it
        starts, so they connect as that user whether or not a JWT key is set.
        """
        self._trusted.append((token.encode(), identity))

    @property
    def can_verify(self) -> bool:
        return bool(
            self._verify_hook
            or (self.algorithms and (self.config.jwt_secret or self.config.jwt_public_key))
        )

    def identify(self, token: str) -> Identity:
        """The identity a token proves, or AuthError."""
        for known, identity in self._trusted:
            if hmac.compare_digest(known, token.encode()):
                return identity
        if self._verify_hook is not None:
            return self._from_hook(self._verify_hook, token)
        return self._from_jwt(token)

    def verifies(self, token: str) -> bool:
        try:
            self.identify(token)
        except AuthError:
            return False
        return True

    def _from_hook(self, hook: Callable[..., Any], token: str) -> Identity:
        """The identity `verify_token` answers. The hook is the deployment's code:
        whatever it raises (but its own AuthError, a refusal with a reason) or any
        answer but an identity, a dict or None is logged and refuses the token."""
        try:
            result = call_inline("verify_token", hook, token, passes=AuthError)
        except HookFailed:
            raise AuthError(_HOOK_FAILED) from None
        if result is None:
            raise AuthError("token refused")
        if isinstance(result, Identity):
            return checked(result)
        if not isinstance(result, Mapping):
            log.error(
                "hook verify_token answered %s; only an identity dict or None are answers: "
                "token refused",
                describe(result),
            )
            raise AuthError(_HOOK_FAILED)
        return self.identity_from_claims(dict(result), default_sub=result.get("userId"))

    def _from_jwt(self, token: str) -> Identity:
        config = self.config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise AuthError(f"token algorithm {algorithm!r} is not accepted")
        key = config.jwt_secret if str(algorithm).startswith("HS") else config.jwt_public_key
        if not key:
            raise AuthError(f"no key is configured for algorithm {algorithm!r}")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=config.jwt_audience or None,
                issuer=config.jwt_issuer or None,
                options={"require": ["sub"], "verify_aud": bool(config.jwt_audience)},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("token has expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"token refused: {exc}") from None
        return self.identity_from_claims(claims)

    def identity_from_claims(self, claims: dict[str, Any], default_sub: Any = None) -> Identity:
        user_id = claims.get("sub", default_sub)
        if not isinstance(user_id, str) or not user_id:
            raise AuthError("token has no user (`sub`)")
        tenant = claims.get("tenant", claims.get("tenantId")) or self.config.default_tenant
        channels = claims.get("channels")
        exp = claims.get("exp")
        for text in (
            user_id,
            tenant,
            claims.get("name"),
            claims.get("color"),
            claims.get("avatar_url"),
        ):
            if isinstance(text, str) and not _is_unicode(text):
                # JSON can carry lone surrogates; nothing downstream can store or send them.
                raise AuthError("token claims must be valid Unicode text")
        color = claims.get("color")
        if color is not None and color != "" and not is_color(color):
            # It ends up in every viewer's style attribute: a colour, or nothing.
            raise AuthError("token claim `color` must be `#rrggbb` (hex)")
        kind = claims.get("kind") or PERSON
        if kind not in KINDS:
            raise AuthError(f"token claim `kind` must be one of {', '.join(KINDS)}")
        return checked(
            Identity(
                user_id=user_id,
                tenant_id=str(tenant),
                name=str(claims.get("name") or user_id),
                color=color.lower() if color else None,
                avatar_url=_optional_str(claims.get("avatar_url")),
                expires_at=float(exp) if isinstance(exp, (int, float)) else None,
                channels=frozenset(c for c in channels if isinstance(c, str))
                if isinstance(channels, list)
                else None,
                kind=kind,
            ),
            "token claim",
        )

    def identity_from_jupyter(self, user: Any) -> Identity:
        """The Jupyter server's user (jupyter_server.auth.User) as a realtime identity.

        Its display name and colour are nobody's to correct here: a name loses the
        characters no name may hold, a colour that is not `#rrggbb` is left out (the
        user then has `user_color`). Its user name is the user id: refused if it
        holds a control character, as a token's `sub` is.
        """
        username = user.username
        name = cleaned_name(str(user.display_name or user.name or "")) or username
        color = user.color if is_color(user.color) else None
        return checked(
            Identity(
                user_id=username,
                tenant_id=self.config.default_tenant,
                name=name,
                color=color.lower() if color else None,
                avatar_url=user.avatar_url or None,
            ),
            "the Jupyter user's",
            ("username", "tenant", "display name"),
        )

    def may_access(self, identity: Identity, channel: ChannelRecord, action: str) -> bool:
        """Whether `identity` may `action` ('subscribe' or 'publish') on `channel`;
        HookFailed when the `authorize` hook failed to say."""
        if channel.type != "private":
            return True
        if identity.user_id in channel.members or identity.user_id == channel.owner:
            return True
        name = channel.key.name
        if identity.channels and any(fnmatch.fnmatchcase(name, p) for p in identity.channels):
            return True
        if self._authorize_hook is not None:
            return self._authorized(self._authorize_hook, identity, name, action)
        return False

    def _authorized(
        self, hook: Callable[..., Any], identity: Identity, name: str, action: str
    ) -> bool:
        """`authorize`'s answer: exactly True allows; False or None refuses. It is the
        deployment's code: anything else it answers (compared by identity, never
        tested for truth) or raises is logged, and HookFailed (`internal`)."""
        answer = call_inline("authorize", hook, identity, name, action)
        if answer is True:
            return True
        if answer is False or answer is None:
            return False
        log.error(
            "hook authorize answered %s; only True (allow), False or None (refuse) "
            "are answers: refused",
            describe(answer),
        )
        raise HookFailed("authorize")


def checked(
    identity: Identity,
    source: str = "identity",
    labels: tuple[str, str, str] = ("sub", "tenant", "name"),
) -> Identity:
    """`identity`, if its user id, tenant and name hold no control character (nor
    what else `profiles.check_name` refuses): they travel in frames, in Redis
    messages and in logs, where a newline splits one record into two. AuthError if not.
    """
    for field, value in zip(
        labels, (identity.user_id, identity.tenant_id, identity.name), strict=True
    ):
        if not isinstance(value, str):
            raise AuthError(f"{source} `{field}` must be a string")
        refused = refused_character(value)
        if refused is not None:
            raise AuthError(f"{source} `{field}` must not contain control characters ({refused})")
    if identity.color is not None and not is_color(identity.color):
        raise AuthError(f"{source} `color` must be `#rrggbb` (hex)")
    return identity


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None

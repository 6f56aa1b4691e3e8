"""Who a token says a client is: JWT checks (signature, expiry, audience, issuer,
algorithm), the claims that become an identity, a `verify_token` hook, trusted kernel
tokens, and who may use a private channel."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nyo_realtime_ext.auth import Authenticator, AuthError, TokenExpired
from nyo_realtime_ext.config import Realtime
from nyo_realtime_ext.hooks import resolve_hook
from nyo_realtime_ext.models import ChannelKey, ChannelRecord, Identity

from .support.tokens import SECRET, make_token


def authenticator(**config: Any) -> Authenticator:
    return Authenticator(Realtime(**{"jwt_secret": SECRET, **config}))


def refusal(auth: Authenticator, token: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        auth.identify(token)
    return caught.value


def test_a_valid_token_becomes_an_identity() -> None:
    exp = int(time.time()) + 3600
    token = make_token(
        "ada",
        name="Ada Lovelace",
        tenant="acme",
        color="#123456",
        avatar_url="https://a/ada.png",
        exp=exp,
        channels=["private-ops", "private-team-*", 7],
    )
    assert authenticator().identify(token) == Identity(
        user_id="ada",
        tenant_id="acme",
        name="Ada Lovelace",
        color="#123456",
        avatar_url="https://a/ada.png",
        expires_at=float(exp),
        channels=frozenset({"private-ops", "private-team-*"}),  # strings only
    )


def test_claims_left_out_get_their_defaults() -> None:
    token = jwt.encode({"sub": "bob"}, SECRET, algorithm="HS256")
    identity = authenticator(default_tenant="house").identify(token)
    assert (identity.tenant_id, identity.name, identity.color) == ("house", "bob", None)
    assert identity.expires_at is None and identity.channels is None
    # `tenantId` is the other spelling of the tenant claim.
    assert authenticator().identify(make_token("bob", tenantId="globex")).tenant_id == "globex"


def test_an_expired_token_is_told_apart() -> None:
    refused = refusal(authenticator(), make_token("ada", exp=int(time.time()) - 60))
    assert isinstance(refused, TokenExpired)
    assert str(refused) == "token has expired"


def test_a_token_signed_with_another_secret_is_refused() -> None:
    refused = refusal(authenticator(), make_token("ada", secret="another-secret-" * 3))
    assert not isinstance(refused, TokenExpired)
    assert "Signature verification failed" in str(refused)


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"iss": "hub", "aud": "nyo"}, True),
        ({"iss": "hub", "aud": ["other", "nyo"]}, True),
        ({"iss": "hub"}, False),
        ({"aud": "nyo"}, False),
        ({"iss": "hub", "aud": "other"}, False),
        ({"iss": "other", "aud": "nyo"}, False),
    ],
)
def test_audience_and_issuer_are_required_when_configured(
    claims: dict[str, Any], accepted: bool
) -> None:
    auth = authenticator(jwt_audience="nyo", jwt_issuer="hub")
    token = make_token("ada", **claims)
    assert auth.verifies(token) is accepted


def test_an_audience_is_not_checked_when_none_is_configured() -> None:
    assert authenticator().identify(make_token("ada", aud="anything")).user_id == "ada"


def test_what_is_no_acceptable_jwt_is_refused_with_the_reason() -> None:
    auth = authenticator()
    assert str(refusal(auth, "not-a-jwt")) == "token is not a JWT"
    unsigned = jwt.encode({"sub": "ada"}, None, algorithm="none")
    assert "'none' is not accepted" in str(refusal(auth, unsigned))
    # `none` is refused even when listed.
    assert not authenticator(jwt_algorithms=["HS256", "none"]).verifies(unsigned)
    long_secret = "k" * 64  # what HS512 asks for
    stronger = jwt.encode({"sub": "ada"}, long_secret, algorithm="HS512")
    assert "'HS512' is not accepted" in str(refusal(auth, stronger))
    assert authenticator(jwt_secret=long_secret, jwt_algorithms=["HS512"]).verifies(stronger)
    no_sub = jwt.encode({"name": "x"}, SECRET, algorithm="HS256")
    assert "sub" in str(refusal(auth, no_sub))
    assert "no user" in str(refusal(auth, make_token("")))


def test_claims_that_are_not_unicode_text_are_refused() -> None:
    # JSON can carry lone surrogates; nothing downstream could store or send them.
    assert "Unicode" in str(refusal(authenticator(), make_token("ada", name="\ud800")))


def test_asymmetric_tokens_need_the_public_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    token = jwt.encode({"sub": "ada"}, private, algorithm="RS256")
    auth = authenticator(jwt_algorithms=["RS256"], jwt_public_key=public_pem)
    assert auth.identify(token).user_id == "ada"
    keyless = authenticator(jwt_algorithms=["RS256"])
    assert "no key is configured for algorithm 'RS256'" in str(refusal(keyless, token))
    # Where only RS256 is accepted an HMAC token is refused, whatever signed it.
    hmac_token = jwt.encode({"sub": "eve"}, SECRET, algorithm="HS256")
    assert "'HS256' is not accepted" in str(refusal(auth, hmac_token))


def test_a_verify_token_hook_replaces_jwt_checking() -> None:
    auth = authenticator(verify_token="tests.support.hooks:verify")
    assert auth.identify("ticket-ada") == Identity("ada", "acme", "Ada")
    assert str(refusal(auth, "ticket-eve")) == "token refused"
    assert not auth.verifies(make_token("ada"))  # a JWT means nothing to this server now
    given = Identity("grace", "acme")
    assert authenticator(verify_token=lambda token: given).identify("x") is given


def test_a_trusted_token_is_its_identity_and_nothing_else() -> None:
    auth = authenticator()
    kernel = Identity("jupyter-user", "default", "Jupyter User")
    auth.trust_token("kernel-secret", kernel)
    assert auth.identify("kernel-secret") is kernel
    assert not auth.verifies("kernel-secre")
    assert auth.identify(make_token("ada")).user_id == "ada"  # JWTs still work


def test_can_verify_only_with_a_key_or_a_hook() -> None:
    assert authenticator().can_verify
    assert not authenticator(jwt_secret="").can_verify
    assert authenticator(jwt_secret="", verify_token="tests.support.hooks:verify").can_verify
    assert not authenticator(jwt_algorithms=["none"]).can_verify


def test_hooks_are_callables_or_import_strings() -> None:
    from tests.support import hooks

    assert resolve_hook(None) is None and resolve_hook("") is None
    assert resolve_hook(hooks.verify) is hooks.verify
    assert resolve_hook("tests.support.hooks:verify") is hooks.verify
    assert resolve_hook("tests.support.hooks.verify") is hooks.verify


def test_the_jupyter_user_becomes_an_identity_in_the_default_tenant() -> None:
    user = SimpleNamespace(
        username="katherine", name="", display_name="Katherine J", color="", avatar_url=None
    )
    identity = authenticator(default_tenant="lab").identity_from_jupyter(user)
    assert identity == Identity("katherine", "lab", "Katherine J", color=None, avatar_url=None)


def test_who_may_use_a_private_channel() -> None:
    auth = authenticator(authorize="tests.support.hooks:authorize")
    ops = ChannelRecord(ChannelKey("acme", "private-ops"), "private", "owner", 0.0, ("bob",))
    public = ChannelRecord(ChannelKey("acme", "room"), "public", None, 0.0)
    ada, bob, owner = Identity("ada", "acme"), Identity("bob", "acme"), Identity("owner", "acme")
    granted = Identity("eve", "acme", channels=frozenset({"private-o*"}))
    assert auth.may_access(ada, public, "subscribe")
    assert auth.may_access(bob, ops, "publish")  # a member
    assert auth.may_access(owner, ops, "subscribe")
    assert auth.may_access(granted, ops, "subscribe")  # a grant in the token
    assert not auth.may_access(ada, ops, "subscribe")  # the hook says no to this one
    open_to_ada = ChannelRecord(ChannelKey("acme", "private-open-to-ada"), "private", None, 0.0)
    assert auth.may_access(ada, open_to_ada, "subscribe")  # ... and yes to this one
    assert not authenticator().may_access(ada, open_to_ada, "subscribe")  # no hook: no


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "ada\nevil"},
        {"sub": "ada\x00"},
        {"sub": "ada", "tenant": "acme\r\n"},
        {"sub": "ada", "tenantId": "ac\x1bme"},
        {"sub": "ada", "name": 'Ada\n{"type":"message"}'},
        {"sub": "ada", "name": "Ada\u202eecila"},  # a bidi override: what PUT profile refuses
    ],
)
def test_control_characters_in_ids_tenants_and_names_are_refused(claims: dict[str, Any]) -> None:
    """Issue 23, finding 15: they travel in frames, Redis messages and logs, where a
    newline splits a record; before, each of these tokens became an identity."""
    token = jwt.encode({"name": "Ada", **claims}, SECRET, algorithm="HS256")
    message = str(refusal(authenticator(), token))
    assert "must not contain control characters (U+" in message
    field = "sub" if "sub" in message else "tenant" if "tenant" in message else "name"
    assert f"`{field}`" in message


def test_a_verify_token_hook_cannot_bring_a_control_character_either() -> None:
    auth = authenticator(verify_token=lambda token: Identity("ada\n", "acme", "Ada"))
    assert "control characters" in str(refusal(auth, "whatever"))
    by_dict = authenticator(verify_token=lambda token: {"userId": "ada", "tenantId": "a\nb"})
    assert "`tenant`" in str(refusal(by_dict, "whatever"))


@pytest.mark.parametrize(
    "color",
    ["red;background-image:url(https://evil.example/t.png)", "red", "#c33", "#12345g", 7],
)
def test_a_color_claim_must_be_a_colour(color: Any) -> None:
    """Issue 23, finding 18: the claim ends up in every viewer's style attribute;
    before, any string was taken. The rule is `PUT profile`'s."""
    message = str(refusal(authenticator(), make_token("ada", color=color)))
    assert "`color` must be `#rrggbb`" in message
    assert authenticator().identify(make_token("ada", color="#ABCDEF")).color == "#abcdef"
    assert authenticator().identify(make_token("ada", color=None)).color is None


def test_the_jupyter_identity_is_cleaned_of_what_nobody_can_correct() -> None:
    """Findings 15 and 18 under Jupyter: a display name loses its control characters
    and a colour that is not `#rrggbb` is left out (the user has `user_color` then);
    a user name with a control character is refused as a `sub` is."""
    auth = authenticator(default_tenant="lab")
    user = SimpleNamespace(
        username="kj",
        name="kj",
        display_name="Katherine\n\x1b[31mJ\u202e",
        color="red;background-image:url(https://evil.example/t.png)",
        avatar_url=None,
    )
    identity = auth.identity_from_jupyter(user)
    assert (identity.name, identity.color) == ("Katherine[31mJ", None)
    user.color, user.display_name = "#A1B2C3", "\n\t"
    identity = auth.identity_from_jupyter(user)
    assert (identity.name, identity.color) == ("kj", "#a1b2c3")
    user.username = "kj\nroot"
    with pytest.raises(AuthError) as caught:
        auth.identity_from_jupyter(user)
    assert "`username` must not contain control characters (U+000A)" in str(caught.value)

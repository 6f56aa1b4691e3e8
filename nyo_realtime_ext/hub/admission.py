"""Who may open a WebSocket: a slot reserved at the handshake, given back when it ends.

Two pools, apart. `max_connections` is for connections that are authenticated,
or bring their credentials to the handshake (a token, Jupyter's login).
Connections that come without credentials (they mean to send an `auth` frame)
draw on their own allowance, `max_unauthenticated_connections` in all and
`max_unauthenticated_per_address` from one address, so that sockets that never
authenticate cannot take the slots of those who do; one that authenticates moves
to the first pool, if it has room.

A slot is taken when the handshake is admitted, before anything is awaited, so
that many handshakes at once cannot all pass a check that counts only the
connections already open; whoever holds it gives it back (`Slot.release`,
idempotent) when the handshake fails or the connection ends.
"""

from __future__ import annotations

from typing import Any


class Refused(Exception):
    """A handshake turned away: the HTTP status and the message (naming the setting)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Slot:
    """One admitted connection's place: in the authenticated pool or not."""

    __slots__ = ("admission", "address", "authenticated", "released")

    def __init__(self, admission: Admission, address: str, authenticated: bool) -> None:
        self.admission = admission
        self.address = address
        self.authenticated = authenticated
        self.released = False

    def authenticate(self) -> bool:
        """Move to the authenticated pool; False (and nothing moved) if it is full."""
        if self.authenticated or self.released:
            return True
        admission = self.admission
        if not admission.has_room():
            return False
        admission.drop_unauthenticated(self.address)
        admission.authenticated += 1
        self.authenticated = True
        return True

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.authenticated:
            self.admission.authenticated -= 1
        else:
            self.admission.drop_unauthenticated(self.address)


class Admission:
    """The counts behind `max_connections` and the unauthenticated allowances."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.authenticated = 0  # slots of the authenticated pool in use
        self.unauthenticated = 0
        self.per_address: dict[str, int] = {}

    def has_room(self) -> bool:
        limit = self.config.max_connections
        return not limit or self.authenticated < limit

    def admit(self, address: str, authenticated: bool) -> Slot:
        """A slot for a handshake from `address`, or `Refused`."""
        config = self.config
        if authenticated:
            if not self.has_room():
                raise Refused(
                    503,
                    f"this server holds its maximum of {config.max_connections} connections "
                    "(max_connections); try again later",
                )
            self.authenticated += 1
            return Slot(self, address, True)
        per_address = config.max_unauthenticated_per_address
        if per_address and self.per_address.get(address, 0) >= per_address:
            raise Refused(
                429,
                f"at most {per_address} connections from one address may wait to "
                "authenticate (max_unauthenticated_per_address); authenticate those "
                "first, or give the token at the handshake",
            )
        total = config.max_unauthenticated_connections
        if total and self.unauthenticated >= total:
            raise Refused(
                503,
                f"this server holds its maximum of {total} connections waiting to "
                "authenticate (max_unauthenticated_connections); try again later, or "
                "give the token at the handshake",
            )
        self.unauthenticated += 1
        self.per_address[address] = self.per_address.get(address, 0) + 1
        return Slot(self, address, False)

    def drop_unauthenticated(self, address: str) -> None:
        self.unauthenticated -= 1
        left = self.per_address.pop(address, 1) - 1
        if left > 0:
            self.per_address[address] = left

"""Message ids, and when a history answer is complete: one rule for every engine.

An id is `epoch-seq`: the channel's epoch (random, made when its history
begins) and its sequence number. An id of another epoch, say after the history
was lost, is recognised as unknown instead of being taken for an id of the new
history, and the subscriber who brings it is told `recovered: false`.
"""

from __future__ import annotations


def message_id(epoch: str, seq: int) -> str:
    return f"{epoch}-{seq}"


def parse_message_id(message_id_: str) -> tuple[str, int] | None:
    epoch, _, seq = message_id_.rpartition("-")
    # isdigit() alone admits "²" and numbers int() refuses; ids are short ASCII.
    if not epoch or not (seq.isascii() and seq.isdigit()) or len(seq) > 18:
        return None
    return epoch, int(seq)


def delta_after(since: str | None, epoch: str, last_seq: int, floor: str | None) -> int | None:
    """The seq after which a channel's shared state can be sent as a delta to a
    subscriber who brings `since`, or None when only the whole state will do: no
    `since` (or `""`), an unknown one, one of another epoch, or one from before
    deletions were forgotten (`floor`, the version of the newest forgotten one)."""
    parsed = parse_message_id(since) if since else None
    if parsed is None or parsed[0] != epoch or parsed[1] > last_seq:
        return None
    floor_id = parse_message_id(floor) if floor else None
    if floor_id is not None and floor_id[0] == epoch and floor_id[1] > parsed[1]:
        return None
    return parsed[1]

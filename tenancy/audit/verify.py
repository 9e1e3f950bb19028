"""Checking a chain: recompute it from ``seq`` 1 and check the signed head.

The first bad position is named with the kind of damage found there:

- ``changed``: the record at the position is not what was written (its hash does not
  match its content, or its successor committed to a different hash);
- ``deleted``: a record is missing at the position (a gap, or fewer records than the
  head counts with the rest renumbered);
- ``inserted``: a record at the position was not written by the log (more records than
  the head counts);
- ``reordered``: the record at the position belongs elsewhere in the same chain;
- ``truncated``: records from the position on are missing (the head counts more);
- ``head_mismatch``: the head's HMAC does not verify (a forged or replayed head), or it
  names a different last hash: the chain was rewritten, position = the head's ``seq``;
- ``head_missing``: records exist but no head does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from tenancy.audit.record import GENESIS_HASH, AuditRecord, head_mac_ok
from tenancy.audit.store import Head


class Damage(StrEnum):
    """The kind of damage found at the first bad position of a chain (see the module
    docstring for what each means)."""

    CHANGED = "changed"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    HEAD_MISMATCH = "head_mismatch"
    HEAD_MISSING = "head_missing"


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """``ok``, or the first bad ``position`` (1-based seq) and the ``damage`` found."""

    tenant_id: str
    records: int
    head_seq: int | None
    damage: Damage | None = None
    position: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the chain verified: every record in place and linked, and a head whose
        MAC verifies and names the last record."""
        return self.damage is None

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.tenant_id}: {self.records} events, chain and signed head valid"
        return (
            f"BROKEN: {self.tenant_id}: {self.damage} at position {self.position} ({self.detail})"
        )


def verify_chain(
    key: bytes, tenant_id: str, records: Sequence[AuditRecord], head: Head | None
) -> VerifyResult:
    """Recompute the tenant's chain from ``seq`` 1 and check it against the signed head.

    It reports, never raises: a broken chain is a result with the first bad position and its
    damage. A tenant with neither records nor a head verifies as an empty chain, so deleting
    a whole chain *and* its head is not detected here.

    Args:
        key: the audit HMAC key the head was signed with.
        tenant_id: the chain's tenant; a record naming another tenant is damage.
        records: the chain's records, in ``seq`` order, as read from the store.
        head: the stored head, or None if there is none.

    Returns:
        ``VerifyResult``: ``ok``, or the first bad position and its ``Damage``.
    """
    count = len(records)
    head_seq = None if head is None else head.seq
    authentic = head is not None and head_mac_ok(key, tenant_id, head.seq, head.hash, head.mac)
    expected = head.seq if authentic and head is not None else None

    def bad(damage: Damage, position: int, detail: str) -> VerifyResult:
        return VerifyResult(tenant_id, count, head_seq, damage, position, detail)

    hashes = {r.hash: r for r in records}
    prev = GENESIS_HASH
    for index, record in enumerate(records):
        position = index + 1
        content_ok = record.computed_hash() == record.hash
        if (
            record.seq == position
            and content_ok
            and record.prev_hash == prev
            and record.tenant_id == tenant_id
            and record.v == 1
        ):
            prev = record.hash
            continue
        if expected is not None and count < expected:
            return bad(
                Damage.DELETED,
                position,
                f"{expected - count} record(s) missing; head counts {expected}",
            )
        if expected is not None and count > expected:
            return bad(
                Damage.INSERTED,
                _inserted_at(records, index, hashes),
                f"{count - expected} record(s) too many; head counts {expected}",
            )
        if record.seq > position:
            return bad(Damage.DELETED, position, f"next record has seq {record.seq}")
        moved = (record.prev_hash != prev and record.prev_hash in hashes) or (
            not content_ok and _original_seq(record, count) not in (None, position)
        )
        if moved:
            return bad(Damage.REORDERED, position, "record belongs at another position")
        if not content_ok or record.tenant_id != tenant_id or record.v != 1:
            return bad(Damage.CHANGED, position, "content does not match its hash")
        # Self-consistent but not linked to its predecessor: the predecessor was
        # rewritten (and re-hashed) after this record committed to it.
        return bad(
            Damage.CHANGED, max(position - 1, 1), "the next record committed to a different hash"
        )
    if head is None:
        if count:
            return bad(Damage.HEAD_MISSING, count, "records but no signed head")
        return VerifyResult(tenant_id, 0, None)
    if not authentic:
        return bad(Damage.HEAD_MISMATCH, head.seq, "head HMAC does not verify")
    if count < head.seq:
        return bad(Damage.TRUNCATED, count + 1, f"head counts {head.seq}, found {count}")
    if count > head.seq:
        return bad(Damage.INSERTED, head.seq + 1, f"head counts {head.seq}, found {count}")
    if prev != head.hash:
        return bad(Damage.HEAD_MISMATCH, head.seq, "chain does not end in the signed hash")
    return VerifyResult(tenant_id, count, head_seq)


def _inserted_at(records: Sequence[AuditRecord], index: int, hashes: dict[str, AuditRecord]) -> int:
    """Where the first inserted record sits: the record at ``index`` may link back past
    self-consistent forgeries; its ``prev_hash`` names the last genuine predecessor."""
    linked = hashes.get(records[index].prev_hash)
    if linked is not None and records[index].prev_hash != records[index - 1].hash:
        return records.index(linked) + 2
    return index + 1


def _original_seq(record: AuditRecord, limit: int) -> int | None:
    """The seq a moved record was written at (its hash covers it), if any within reach."""
    for seq in range(1, limit + 2):
        if record.computed_hash(seq=seq) == record.hash:
            return seq
    return None

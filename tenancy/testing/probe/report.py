"""The probe's result: positive controls and one classified cell per attack request.

The JSON form (``kind: tenancy.probe``, version 1) is what ``tenancy probe --out`` writes
and what the evidence pack reads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tenancy.testing.probe.config import ProbeConfig

KIND = "tenancy.probe"
VERSION = 1

# Exit codes of ``tenancy probe``: a leak outranks everything; a void run proves nothing.
EXIT_CLEAN = 0
EXIT_LEAKED = 1
EXIT_VOID = 3
EXIT_ERRORS = 4


class Outcome(StrEnum):
    """How one attack request ended. Only ``ENFORCED`` shows isolation; ``ERROR`` shows
    nothing either way, and ``SKIPPED`` was not tried."""

    ENFORCED = "enforced"  # refused, or served only the caller's own data
    LEAKED = "leaked"  # another tenant's data seen or changed, or a bad credential served
    ERROR = "error"  # the service failed (5xx, no answer): isolation not shown either way
    SKIPPED = "skipped"  # not testable with this configuration (the detail says why)


class Attack(StrEnum):
    """The kinds of attack request the probe sends (the value is what reports and the JSON
    form carry): another tenant's identity (plain, with a tenant header or query parameter,
    with the victim's ids in the body), a tampered credential (none, ``alg=none``, a forged
    signature, expired, another audience) and support staff without a valid grant for the
    victim (none, expired, a grant for another tenant)."""

    CROSS_IDENTITY = "cross-identity"
    TENANT_HEADER = "tenant-header"
    TENANT_QUERY = "tenant-query"
    FOREIGN_IDS_IN_BODY = "foreign-ids-in-body"
    NO_TOKEN = "no-token"  # noqa: S105 (an attack name, not a secret)
    ALG_NONE = "alg-none"
    BAD_SIGNATURE = "bad-signature"
    EXPIRED = "expired"
    WRONG_AUDIENCE = "wrong-audience"
    SUPPORT_NO_GRANT = "support-no-grant"
    SUPPORT_EXPIRED_GRANT = "support-expired-grant"
    SUPPORT_OTHER_TENANT_GRANT = "support-other-tenant-grant"


@dataclass(frozen=True, slots=True)
class Cell:
    """One attack request: ``actor`` tried ``attack`` on ``victim``'s data via ``route``."""

    route: str
    victim: str
    attack: str
    actor: str
    status: int | None
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Control:
    """One positive control: an identity reaching its own tenant's data."""

    identity: str
    route: str
    status: int | None
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """The whole result of one probe run: who and what was probed, the positive controls,
    one cell per attack request and why the run is void, if it is."""

    target: str
    started_at: str
    finished_at: str
    duration_s: float
    tenants: tuple[str, ...]
    identities: tuple[Mapping[str, Any], ...]
    routes: tuple[str, ...]
    controls: tuple[Control, ...]
    cells: tuple[Cell, ...]
    void_reasons: tuple[str, ...] = ()
    requests: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def void(self) -> bool:
        """A failed positive control: refusals prove nothing if nothing is ever allowed."""
        return bool(self.void_reasons)

    @property
    def summary(self) -> dict[str, int]:
        """The number of cells per outcome, every outcome present (zero included)."""
        counts = Counter(c.outcome for c in self.cells)
        return {o.value: counts.get(o, 0) for o in Outcome}

    @property
    def leaks(self) -> list[Cell]:
        """The cells where isolation failed."""
        return [c for c in self.cells if c.outcome is Outcome.LEAKED]

    @property
    def exit_code(self) -> int:
        """The exit code of ``tenancy probe``: a leak (1) outranks a void run (3), which
        outranks errors (4); 0 only when none of them happened."""
        if self.leaks:
            return EXIT_LEAKED
        if self.void:
            return EXIT_VOID
        if any(c.outcome is Outcome.ERROR for c in self.cells):
            return EXIT_ERRORS
        return EXIT_CLEAN

    def to_json(self) -> dict[str, Any]:
        """The versioned JSON form (``kind: tenancy.probe``, version 1), with the summary
        and the void flag computed. ``extra`` is not written."""
        return {
            "kind": KIND,
            "version": VERSION,
            "target": self.target,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "tenants": list(self.tenants),
            "identities": [dict(i) for i in self.identities],
            "routes": list(self.routes),
            "void": self.void,
            "void_reasons": list(self.void_reasons),
            "controls": [asdict(c) for c in self.controls],
            "cells": [{**asdict(c), "outcome": c.outcome.value} for c in self.cells],
            "summary": self.summary,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProbeReport:
        """Read a report written by ``to_json`` (``extra`` comes back empty).

        Raises:
            ValueError: the document is not ``tenancy.probe`` version 1.
            KeyError: a required field is missing.
        """
        if data.get("kind") != KIND or data.get("version") != VERSION:
            raise ValueError(f"not a {KIND} version {VERSION} document")
        return cls(
            target=data["target"],
            started_at=data["started_at"],
            finished_at=data["finished_at"],
            duration_s=float(data["duration_s"]),
            tenants=tuple(data["tenants"]),
            identities=tuple(data["identities"]),
            routes=tuple(data["routes"]),
            controls=tuple(Control(**c) for c in data["controls"]),
            cells=tuple(Cell(**{**c, "outcome": Outcome(c["outcome"])}) for c in data["cells"]),
            void_reasons=tuple(data.get("void_reasons", ())),
            requests=int(data.get("requests", 0)),
        )

    def render_text(self, *, verbose: bool = False) -> str:
        """The matrix per route and attack, then every cell that is not enforced."""
        lines = [
            f"probe of {self.target}: {len(self.tenants)} tenants, "
            f"{len(self.identities)} identities, {len(self.routes)} routes, "
            f"{len(self.cells)} cells, {self.requests} requests in "
            f"{self.duration_s:.1f} s"
        ]
        people = {c.identity for c in self.controls}
        reached = {c.identity for c in self.controls if c.ok}
        lines.append(
            f"positive controls: {len(reached)}/{len(people)} identities reached "
            f"their own data ({sum(c.ok for c in self.controls)} of "
            f"{len(self.controls)} control requests did)"
        )
        lines += [f"  VOID: {reason}" for reason in self.void_reasons]
        lines += _matrix(self.cells)
        shown = [c for c in self.cells if verbose or c.outcome is not Outcome.ENFORCED]
        for cell in shown:
            lines.append(
                f"{cell.outcome.value.upper():8} {cell.route} victim={cell.victim} "
                f"attack={cell.attack} actor={cell.actor} status={cell.status}"
                + (f": {cell.detail}" if cell.detail else "")
            )
        summary = ", ".join(f"{v} {k}" for k, v in self.summary.items())
        lines.append(f"summary: {summary}" + (" - VOID" if self.void else ""))
        return "\n".join(lines)


def _matrix(cells: Sequence[Cell]) -> list[str]:
    """Route rows x attack columns; each entry counts enforced/total (``!`` on a leak)."""
    attacks = [a.value for a in Attack if any(c.attack == a.value for c in cells)]
    routes = list(dict.fromkeys(c.route for c in cells))
    if not routes:
        return []
    width = max(len(r) for r in routes)
    out = ["", " " * width + "  " + " ".join(f"{a[:13]:>13}" for a in attacks)]
    for route in routes:
        row = []
        for attack in attacks:
            mine = [c for c in cells if c.route == route and c.attack == attack]
            good = sum(c.outcome is Outcome.ENFORCED for c in mine)
            mark = "!" if any(c.outcome is Outcome.LEAKED for c in mine) else " "
            row.append(f"{f'{good}/{len(mine)}{mark}' if mine else '-':>13}")
        out.append(f"{route:<{width}}  " + " ".join(row))
    out.append("")
    return out


def void_reasons(
    config: ProbeConfig, controls: Sequence[Control], values: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """Why a run proves nothing: a tenant without data, an identity without its own."""
    reasons = []
    for tenant in config.tenants:
        if not values.get(tenant):
            reasons.append(f"no data was created for tenant {tenant!r}: no seed succeeded")
    for person in config.identities:
        mine = [c for c in controls if c.identity == person.name]
        if not any(c.ok for c in mine):
            seen = ", ".join(f"{c.route} -> {c.status} {c.detail}".strip() for c in mine)
            reasons.append(f"{person.name} failed its positive control ({seen or 'no route'})")
    return reasons

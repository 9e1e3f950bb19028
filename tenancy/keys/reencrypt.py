"""Moving a tenant's data to its newest data key, in batches, with progress.

After ``TenantKeys.rotate_data_key`` new writes use the new version while old rows still
name the old one. This job loads each row (opening it with whatever version sealed it),
marks its encrypted columns changed, and flushes, so they are sealed again under the
current data key. It works in primary-key order and reports progress after every
batch; it can be stopped and run again (rows already on the new version are sealed
again, harmlessly). When it completes, older data-key versions can be retired.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Mapper, attributes, sessionmaker, undefer

from tenancy.context import TenantContext, bind
from tenancy.keys.columns import EncryptedBytes, EncryptedJSON, EncryptedString

# Every encrypted column type tenancy ships (an application's own subclass included).
_ENCRYPTED_TYPES = (EncryptedString, EncryptedBytes, EncryptedJSON)


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a re-encryption got: ``done`` rows re-sealed of the ``total`` counted at the
    start (rows added meanwhile can make ``done`` exceed it)."""

    done: int
    total: int

    @property
    def fraction(self) -> float:
        """``done / total``, and 1.0 for a tenant with no rows."""
        return 1.0 if self.total == 0 else self.done / self.total


class ReencryptionJob:
    """Re-seal every encrypted column of ``model`` for one tenant.

    Args:
        sessions: a ``TenantSession`` factory whose sessions carry the key service.
        model: a ``TenantScoped`` mapped class with encrypted columns.
        ctx: the tenant's context (the job runs as that tenant: RLS and scoping apply).
    """

    def __init__(
        self,
        sessions: sessionmaker[Any],
        model: type[Any],
        ctx: TenantContext,
        *,
        batch_size: int = 500,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._model = model
        self._ctx = ctx
        self._batch = batch_size
        self._progress = progress or (lambda _: None)

    def run(self) -> Progress:
        """Re-seal every row of the tenant under the current data key, in primary-key order,
        one committed batch at a time, reporting progress after each. Returns the final
        progress. Stopped half-way, the committed batches stay done; running again starts
        from the first row.

        Raises:
            KeyManagementError: a row cannot be opened or sealed (its key unavailable or
                destroyed, or its ciphertext refused); the batch in progress is rolled back.
        """
        with bind(self._ctx), self._sessions() as session:
            total = int(session.scalar(select(func.count()).select_from(self._model)) or 0)
            done = 0
            offset = 0
            keys = [c.key for c in object_mapper_of(self._model).primary_key]
            order = [getattr(self._model, k) for k in keys]
            encrypted = _encrypted_attributes(object_mapper_of(self._model))
            options = [undefer(getattr(self._model, key)) for key in encrypted]
            while True:
                rows = session.scalars(
                    select(self._model)
                    .options(*options)
                    .order_by(*order)
                    .offset(offset)
                    .limit(self._batch)
                ).all()
                if not rows:
                    break
                for row in rows:
                    for key in encrypted:
                        if getattr(row, key) is not None:
                            attributes.flag_modified(row, key)
                session.commit()
                session.expunge_all()
                done += len(rows)
                offset += len(rows)
                self._progress(Progress(done, total))
        return Progress(done, total)


def _encrypted_attributes(mapper: Mapper[Any]) -> list[str]:
    """The mapped attributes of ``mapper`` stored in an encrypted column type."""
    return [
        prop.key
        for prop in mapper.column_attrs
        if any(isinstance(column.type, _ENCRYPTED_TYPES) for column in prop.columns)
    ]


def object_mapper_of(model: type[Any]) -> Any:
    """The SQLAlchemy mapper of ``model`` (``sqlalchemy.inspect``), imported late."""
    from sqlalchemy import inspect

    return inspect(model)


__all__ = ["Progress", "ReencryptionJob"]

"""Writes by statement: the tenant column of a DML statement may only hold the bound tenant.

Flushes are guarded object by object (``orm.py``). A statement run through
``session.execute`` skips the flush, so its values are checked here, **before any SQL is
sent**, for every INSERT, UPDATE and DELETE whose target table has a ``tenant_id`` column,
ORM-enabled (``insert(Model)``) or Core (``insert(table)``) alike:

=========================================== ==============================================
``insert(M).values(tenant_id=X)``           X must be the bound tenant; missing: stamped
``insert(M).values([{...}, ...])``          each row the same (missing: stamped)
``execute(insert(M), [{...}, ...])``        each parameter set the same (missing: stamped)
``insert(M).from_select(names, select)``    ``tenant_id`` must be selected as the bound
                                            tenant's id (a literal); the inner SELECT gets
                                            the ORM criteria like any other
``update(M).values(tenant_id=X)``           X must be the bound tenant (a literal): a row
                                            never moves to another tenant
``execute(update(M), [{...}, ...])``        bulk UPDATE by primary key: each ``tenant_id``
                                            (part of the key) must be the bound tenant;
                                            missing: stamped
``on_conflict_do_update(set_=...)``         ``tenant_id`` in ``set_``: as UPDATE
``update(table)`` / ``delete(table)``       Core: ``WHERE tenant_id = <bound>`` is added
=========================================== ==============================================

A value that is not a literal (another column, a function, a subquery) cannot be checked
before the statement runs, so it is refused. Anything refused raises
:class:`~tenancy.errors.CrossTenantWrite`.

SQLAlchemy keeps a statement's VALUES in ``_values`` / ``_multi_values`` and the columns
of an INSERT ... SELECT in ``_select_names``; there is no public accessor, so this module
reads those attributes, and the tests in ``tests/integration/test_scoping_statements.py``
fail if a SQLAlchemy release moves them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Delete, Insert, Table, Update
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.sql.elements import BindParameter, Label

from tenancy.errors import CrossTenantWrite

TENANT_COLUMN = "tenant_id"


def tenant_table(statement: Any) -> Table | None:
    """The target table of a DML statement if it is tenant-owned (has ``tenant_id``)."""
    table = getattr(statement, "table", None)
    if isinstance(table, Table) and TENANT_COLUMN in table.c:
        return table
    return None


def guard_statement(state: ORMExecuteState, table: Table, tenant_id: str) -> None:
    """Check (and where a value is missing, stamp) the tenant of a DML statement.

    Rewrites ``state.statement`` / ``state.parameters`` in place when it stamps or scopes.

    Raises:
        CrossTenantWrite: the statement would write a row of another tenant, or a tenant
            value that cannot be checked before it runs.
    """
    statement = state.statement
    if isinstance(statement, Insert):
        _guard_insert(state, statement, table, tenant_id)
    elif isinstance(statement, Update):
        _guard_update(state, statement, table, tenant_id)
    elif isinstance(statement, Delete):
        _check_parameter_sets(state, tenant_id, stamp=state.is_orm_statement)
        if not state.is_orm_statement:
            state.statement = statement.where(table.c[TENANT_COLUMN] == tenant_id)


def _guard_insert(state: ORMExecuteState, statement: Insert, table: Table, tenant_id: str) -> None:
    select = statement.select
    if select is not None:
        _check_from_select(statement, select, tenant_id)
        return
    _check_conflict_update(statement, tenant_id)
    values = _tenant_value(statement._values or {})
    rows = statement._multi_values[0] if statement._multi_values else None
    if rows is not None:
        stamped = [_checked_row(row, table, tenant_id) for row in rows]
        if any(a is not b for a, b in zip(stamped, rows, strict=True)):
            stamped_statement = statement._generate()
            stamped_statement._multi_values = (stamped,)
            state.statement = stamped_statement
        return
    if values is not _MISSING:
        _require(values, tenant_id, state.parameters)
        _check_parameter_sets(state, tenant_id, stamp=False)
    elif isinstance(state.parameters, list) or TENANT_COLUMN in (state.parameters or {}):
        _check_parameter_sets(state, tenant_id, stamp=True)
    else:
        state.statement = statement.values({table.c[TENANT_COLUMN]: tenant_id})


def _guard_update(state: ORMExecuteState, statement: Update, table: Table, tenant_id: str) -> None:
    value = _tenant_value(statement._values or {})
    if value is not _MISSING:
        _require(value, tenant_id, state.parameters)
    # A list of parameter sets on an ORM UPDATE is a bulk UPDATE by primary key, where
    # tenant_id is part of the key: a missing one is stamped, a foreign one refused.
    bulk = state.is_orm_statement and isinstance(state.parameters, list)
    _check_parameter_sets(state, tenant_id, stamp=bulk)
    if not state.is_orm_statement:
        state.statement = statement.where(table.c[TENANT_COLUMN] == tenant_id)


def _check_from_select(statement: Any, select: Any, tenant_id: str) -> None:
    names = [str(name) for name in statement._select_names]
    if TENANT_COLUMN not in names:
        raise CrossTenantWrite(
            "INSERT ... SELECT into a tenant-owned table must select "
            "tenant_id (the bound tenant's id)"
        )
    source = list(select.selected_columns)[names.index(TENANT_COLUMN)]
    if isinstance(source, Label):
        source = source.element
    _require(source, tenant_id, None)


def _check_conflict_update(statement: Any, tenant_id: str) -> None:
    clause = getattr(statement, "_post_values_clause", None)
    to_set = getattr(clause, "update_values_to_set", None)
    if to_set:
        items = to_set.items() if isinstance(to_set, Mapping) else to_set
        value = _tenant_value(dict(items))
        if value is not _MISSING:
            _require(value, tenant_id, None)


def _checked_row(row: Any, table: Table, tenant_id: str) -> Any:
    """One row of a multi-row VALUES, stamped if it lacks the tenant (same object if not)."""
    if isinstance(row, Mapping):
        value = _tenant_value(row)
        if value is _MISSING:
            return {**row, table.c[TENANT_COLUMN]: tenant_id}
        _require(value, tenant_id, None)
        return row
    # A positional row follows the table's column order.
    position = list(table.c.keys()).index(TENANT_COLUMN)
    if position >= len(row):
        raise CrossTenantWrite("a positional VALUES row without tenant_id")
    _require(row[position], tenant_id, None)
    return row


def _check_parameter_sets(state: ORMExecuteState, tenant_id: str, *, stamp: bool) -> None:
    params = state.parameters
    if not params and not stamp:
        return
    many = isinstance(params, list)
    sets: Sequence[Mapping[str, Any]] = (
        params if isinstance(params, list) else [cast(Mapping[str, Any], params or {})]
    )
    out = []
    for one in sets:
        if TENANT_COLUMN in one:
            if one[TENANT_COLUMN] != tenant_id:
                raise CrossTenantWrite("refusing a statement for another tenant's rows")
            out.append(one)
        elif stamp:
            out.append({**one, TENANT_COLUMN: tenant_id})
        else:
            out.append(one)
    if stamp:
        state.parameters = out if many else out[0]


_MISSING: Any = object()


def _tenant_value(values: Mapping[Any, Any]) -> Any:
    for key, value in values.items():
        name = key if isinstance(key, str) else getattr(key, "key", None)
        if name == TENANT_COLUMN:
            return value
    return _MISSING


def _require(value: Any, tenant_id: str, params: Any) -> None:
    """``value`` must be the bound tenant's id as a literal, or a named parameter that
    every parameter set gives as the bound tenant's id."""
    if isinstance(value, BindParameter):
        if value.callable is not None:
            raise CrossTenantWrite("tenant_id must be a literal value")
        if value.value is None and params:
            sets = params if isinstance(params, list) else [params]
            if all(one.get(value.key) == tenant_id for one in sets):
                return
        value = value.value
    if not isinstance(value, str) or value != tenant_id:
        raise CrossTenantWrite("refusing to write a tenant_id other than the bound tenant's")

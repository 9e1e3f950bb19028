"""Policies and their data, with a revision that every change bumps.

A bundle is a directory laid out like an OPA bundle: ``*.rego`` modules (``*_test.rego``
are tests, never loaded into a decision point) and JSON data files merged into ``data``.
The shipped directory holds the policy and empty tables; the application's own data (its
routes, actions, roles) is laid over it from files the application owns (``data=``, or
``TENANCY_POLICY_DATA`` through :mod:`tenancy.deployment`), so the library names no
application.
Engines subscribe to changes: when data changes (a role binding removed, a route
declared) the revision moves, engines reload, and every cached decision made under the
old revision becomes unreachable.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tenancy.errors import ConfigurationError

DEFAULT_POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"
_PACKAGED_POLICY_DIR = Path(__file__).resolve().parent / "_policies"


def default_policy_dir() -> Path:
    """The policies shipped with tenancy (inside the wheel, or the source tree's)."""
    return _PACKAGED_POLICY_DIR if _PACKAGED_POLICY_DIR.is_dir() else DEFAULT_POLICY_DIR


class PolicyBundle:
    """Rego modules plus a data document; thread-safe; ``revision`` counts changes."""

    def __init__(
        self,
        modules: Mapping[str, str],
        data: Mapping[str, Any],
        *,
        bundle_revision: str | None = None,
    ) -> None:
        if not modules:
            raise ConfigurationError("a policy bundle needs at least one Rego module")
        self._modules = dict(modules)
        self._data: dict[str, Any] = copy.deepcopy(dict(data))
        self._bundle_revision = bundle_revision or content_revision(self._modules, self._data)
        self._revision = 1
        self._lock = threading.Lock()
        self._listeners: list[Callable[[PolicyBundle], None]] = []

    @classmethod
    def from_directory(
        cls,
        directory: str | Path | None = None,
        *,
        data: Sequence[str | Path | Mapping[str, Any]] = (),
    ) -> PolicyBundle:
        """Load ``*.rego`` (not ``*_test.rego``) and ``data/*.json`` below ``directory``
        (default: the shipped policies), then lay each of ``data`` over that document in
        order: a JSON file, or a mapping. Objects merge key by key; any other value in a
        later layer replaces the earlier one (so an application's ``sensitive_scopes``
        list is the whole list).

        Raises:
            ConfigurationError: the directory is missing, a data file is unreadable or not
                a JSON object, or two files of the directory define the same key.
        """
        root = Path(directory) if directory is not None else default_policy_dir()
        if not root.is_dir():
            raise ConfigurationError(f"policy directory {root} does not exist")
        modules = {
            str(path.relative_to(root)): path.read_text(encoding="utf-8")
            for path in sorted(root.rglob("*.rego"))
            if not path.name.endswith("_test.rego")
        }
        document: dict[str, Any] = {}
        for path in sorted((root / "data").glob("*.json")):
            try:
                _merge(document, json.loads(path.read_text(encoding="utf-8")))
            except ValueError as exc:
                raise ConfigurationError(f"policy data {path} is invalid: {exc}") from exc
        for layer in data:
            _overlay(document, _read_layer(layer))
        return cls(modules, document)

    def overlaid(self, data: Sequence[str | Path | Mapping[str, Any]]) -> PolicyBundle:
        """A new bundle: these modules, with each of ``data`` laid over the data document
        as ``from_directory`` does. It keeps this bundle's revision when the layers change
        nothing (an archive built with the same data), else takes its content digest.

        Raises:
            ConfigurationError: a data file is unreadable or not a JSON object.
        """
        document = self.data()
        for layer in data:
            _overlay(document, _read_layer(layer))
        same = document == self.data()
        return PolicyBundle(
            self._modules, document, bundle_revision=self._bundle_revision if same else None
        )

    @property
    def modules(self) -> dict[str, str]:
        """A copy of the Rego modules, path -> source. Fixed at construction: only the data
        document changes."""
        return dict(self._modules)

    @property
    def bundle_revision(self) -> str:
        """Which policies and data this bundle was loaded from: an archive's manifest
        revision, else a digest of the modules and data as loaded (what ``tenancy authz
        bundle build`` writes as the revision). Fixed at load; ``revision`` counts the
        changes made since. Decisions and the decision log carry both."""
        return self._bundle_revision

    @property
    def revision(self) -> int:
        """The current revision: 1 at load, one more after every ``set``. Decisions carry
        it, so a decision can be traced to the data it was made under."""
        return self._revision

    def data(self) -> dict[str, Any]:
        """A deep copy of the data document."""
        with self._lock:
            return copy.deepcopy(self._data)

    def snapshot(self) -> tuple[int, dict[str, Any]]:
        """The revision and a copy of the data, read together: listeners run outside the
        lock, so a listener must load a snapshot and never apply one older than what it
        already holds (changes may arrive out of order)."""
        with self._lock:
            return self._revision, copy.deepcopy(self._data)

    def get(self, path: Sequence[str]) -> Any:
        """A deep copy of the data at ``path`` (a sequence of keys), or None if there is
        nothing there."""
        with self._lock:
            node: Any = self._data
            for key in path:
                if not isinstance(node, dict) or key not in node:
                    return None
                node = node[key]
            return copy.deepcopy(node)

    def set(self, path: Sequence[str], value: Any) -> int:
        """Set ``data[path...] = value`` (``None`` removes it); returns the new revision.

        Engines reload before this returns, so the next decision sees the change.
        """
        if not path or not all(isinstance(k, str) and k for k in path):
            raise ConfigurationError("a data path is a non-empty sequence of keys")
        with self._lock:
            node = self._data
            for key in path[:-1]:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    raise ConfigurationError(f"data path {'/'.join(path)} crosses a value")
            if value is None:
                node.pop(path[-1], None)
            else:
                node[path[-1]] = copy.deepcopy(value)
            self._revision += 1
            revision = self._revision
        # Every listener runs even if one fails (a failed push to OPA must not keep the
        # decision cache from being emptied); the first failure is raised afterwards.
        failures: list[Exception] = []
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]
        return revision

    def subscribe(self, listener: Callable[[PolicyBundle], None]) -> None:
        """Call ``listener(bundle)`` after every change."""
        self._listeners.append(listener)

    # -- conveniences for the data the shipped policy reads --------------------------

    def bind_roles(self, tenant_id: str, subject: str, roles: Sequence[str]) -> int:
        """Make policy data the source of ``subject``'s roles in ``tenant_id``."""
        return self.set(("tenancy", "role_bindings", tenant_id, subject), sorted(set(roles)))

    def unbind_roles(self, tenant_id: str, subject: str) -> int:
        """Remove every role of ``subject`` in ``tenant_id`` (effective next decision)."""
        bindings = self.get(("tenancy", "role_bindings", tenant_id)) or {}
        bindings.pop(subject, None)
        return self.set(("tenancy", "role_bindings", tenant_id), bindings)


def content_revision(modules: Mapping[str, str], data: Mapping[str, Any]) -> str:
    """A digest of ``modules`` and ``data`` (16 hex digits of SHA-256 over their sorted,
    compact JSON): equal content, equal revision, whichever host builds it."""
    canonical = json.dumps(
        {"data": data, "modules": dict(modules)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _merge(into: dict[str, Any], more: Any) -> None:
    if not isinstance(more, dict):
        raise ValueError("a data file must hold a JSON object")
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif key in into:
            raise ValueError(f"data key {key!r} is defined twice")
        else:
            into[key] = value


def _read_layer(layer: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(layer, Mapping):
        return copy.deepcopy(dict(layer))
    path = Path(layer)
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"policy data {path} cannot be read: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigurationError(f"policy data {path} must hold a JSON object")
    return loaded


def _overlay(into: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _overlay(into[key], value)
        else:
            into[key] = copy.deepcopy(value)

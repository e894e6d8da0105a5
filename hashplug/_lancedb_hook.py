"""Register the ``"hashplug"`` LanceDB embedding function without importing LanceDB (standard library only).

LanceDB finds embedding functions in a process-wide registry filled by ``@register`` at import time and has
no plugin entry points, so a table written with the hashplug function reopens only in a process where
:mod:`hashplug.integrations.lancedb` has been imported. ``import hashplug`` must stay cheap (it must not load
LanceDB, pyarrow or pydantic), so :func:`install` registers the function

* at once, when ``lancedb`` is already imported;
* otherwise the moment ``lancedb`` finishes importing, through a one-shot import hook.

Either way ``import hashplug`` then ``import lancedb`` (or the reverse) reopens hashplug tables.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Any

_TARGET = "lancedb"


def _register() -> None:
    try:
        import hashplug.integrations.lancedb  # noqa: F401  (its @register("hashplug") runs on import)
    except ImportError:  # pragma: no cover - a broken LanceDB install; table opens will then say so
        pass


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Wraps the loader of ``lancedb`` so that hashplug registers as soon as its import completes."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        uninstall()
        inner = spec.loader

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
                return inner.create_module(spec)

            def exec_module(self, module: Any) -> None:
                inner.exec_module(module)
                _register()

        spec.loader = _Loader()
        return spec


_HOOK = _RegisterAfterImport()


def install() -> None:
    """Register now if LanceDB is loaded, else when it is first imported (idempotent)."""
    if _TARGET in sys.modules:
        _register()
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def uninstall() -> None:
    """Remove the import hook (registration already done stays)."""
    while _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)

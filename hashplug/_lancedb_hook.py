"""Register the ``"hashplug"`` LanceDB embedding function without importing LanceDB (standard library only).

LanceDB finds embedding functions in a process-wide registry filled by ``@register`` at import time and has
no plugin entry points, so a table written with the hashplug function reopens only in a process where
:mod:`hashplug.integrations.lancedb` has been imported. ``import hashplug`` must stay cheap (it must not load
LanceDB, pyarrow or pydantic), so :func:`install` registers the function

* at once, when ``lancedb`` is already imported;
* otherwise the moment ``lancedb`` finishes importing, through a one-shot import hook.

Either way ``import hashplug`` then ``import lancedb`` (or the reverse) reopens hashplug tables.

A process that never imports hashplug (a script that only does ``import lancedb``, opens a hashplug table and
calls ``tbl.add``) would get LanceDB's ``KeyError: 'hashplug'``. So the installed package also ships a ``.pth``
file (:data:`PTH_NAME`, one line, :data:`PTH_LINE`, written by ``hashplug/_build.py`` into the wheel and into
editable installs) that Python's ``site`` runs at interpreter start: it loads *this file only* (standard
library; it does not import the ``hashplug`` package, numpy or LanceDB) and calls :func:`install`, which adds
the one-shot import hook. A process that never imports LanceDB pays a ``find_spec`` and this module (well under
a millisecond); the first ``import lancedb`` then imports :mod:`hashplug.integrations.lancedb`. Interpreters
started without ``site`` (``python -S``) skip ``.pth`` files: there, ``import hashplug`` before opening the
table.
"""

from __future__ import annotations

import importlib.machinery
import sys

TYPE_CHECKING = False  # typing costs ~5-40 ms to import; this module runs at every interpreter start (.pth)
if TYPE_CHECKING:
    from typing import Any

_TARGET = "lancedb"

#: Name of the ``.pth`` file installed beside the package (site-packages).
PTH_NAME = "hashplug-lancedb-hook.pth"

#: Its one line: load this file by path (not the package), then :func:`install`; never raises at startup.
PTH_LINE = (
    "import sys; exec(\"try:\\n import importlib.util as u, os\\n s = u.find_spec('hashplug')\\n"
    " if s is not None and s.submodule_search_locations and 'hashplug._lancedb_hook' not in sys.modules:\\n"
    "  f = os.path.join(list(s.submodule_search_locations)[0], '_lancedb_hook.py')\\n"
    "  h = u.spec_from_file_location('hashplug._lancedb_hook', f)\\n"
    "  m = u.module_from_spec(h); sys.modules[h.name] = m; h.loader.exec_module(m); m.install()\\n"
    "except Exception:\\n sys.modules.pop('hashplug._lancedb_hook', None)\")\n"
)


def _register() -> None:
    try:
        # the module that holds @register("hashplug"), not the face: LanceDB is often first imported *by*
        # hashplug's own integrations (e.g. `import hashplug.integrations.index`), and the face would then
        # import a module that is still half-initialised; a half-initialised function.py is fine (it
        # finishes its own registration)
        import hashplug.integrations.function  # noqa: F401
    except Exception as exc:  # pragma: no cover - never let hashplug break `import lancedb` (the .pth runs it)
        import warnings

        warnings.warn(
            f"hashplug could not register its LanceDB embedding function ({type(exc).__name__}: {exc}); tables "
            "written with it will not open in this process.",
            RuntimeWarning,
            stacklevel=2,
        )


class _RegisterAfterImport:
    """Wraps the loader of ``lancedb`` so that hashplug registers as soon as its import completes.

    A meta path finder by protocol (``find_spec``), without ``importlib.abc``, whose import costs ~18 ms of
    ``importlib.resources`` at every interpreter start once the ``.pth`` file loads this module.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        uninstall()
        inner = spec.loader

        class _Loader:
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

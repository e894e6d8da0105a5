"""Build step (setuptools only, never imported at run time): install the LanceDB registration ``.pth`` file.

``pyproject.toml`` names :class:`BuildPyWithPth` as the ``build_py`` command. Besides the packages it writes
:data:`hashplug._lancedb_hook.PTH_NAME` (content :data:`~hashplug._lancedb_hook.PTH_LINE`) at the top of the
build: into ``build_lib`` for a wheel, and into the editable wheel for ``pip install -e`` (setuptools then
installs it in site-packages either way). Why the file exists: :mod:`hashplug._lancedb_hook`.

This module is loaded by setuptools from the source tree, in a build environment that has neither numpy nor
hashplug installed, so it reads the ``.pth`` line from ``_lancedb_hook.py`` by path (that file is standard
library only).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from setuptools.command.build_py import build_py

__all__ = ["BuildPyWithPth", "pth_file"]


def pth_file() -> tuple[str, str]:
    """``(file name, content)`` of the ``.pth`` file, read from ``_lancedb_hook.py`` beside this file."""
    spec = importlib.util.spec_from_file_location("_hashplug_lancedb_hook_build", Path(__file__).with_name(
        "_lancedb_hook.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.PTH_NAME, mod.PTH_LINE


class BuildPyWithPth(build_py):
    """``build_py`` that also writes the ``.pth`` file at the top of the wheel (regular or editable)."""

    def run(self) -> None:
        super().run()
        name, line = pth_file()
        if getattr(self, "editable_mode", False):
            # setuptools' editable_wheel points install_lib at the wheel it is assembling; build_lib is a
            # scratch folder there, so the file goes straight into the wheel.
            target = Path(self.get_finalized_command("install").install_lib)
        else:
            target = Path(self.build_lib)
        target.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(line, encoding="utf-8")
        self._pth_output = str(target / name)

    def get_outputs(self, *args: Any, **kwargs: Any) -> list[str]:
        out = list(super().get_outputs(*args, **kwargs))
        if not getattr(self, "editable_mode", False):
            out.append(str(Path(self.build_lib) / pth_file()[0]))
        return out

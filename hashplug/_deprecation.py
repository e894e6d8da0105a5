"""Old names that keep working for one release (0.2.x), with a :class:`DeprecationWarning`.

One word per idea (docs/architecture.md, Vocabulary): ``limit`` is a result count, ``k`` the active units,
``layout`` how codes are stored, ``(ids, distances)`` the result order, ``hamming index`` hashplug's exact
index and ``lancedb index`` LanceDB's approximate ones. The 0.1.0 words are accepted here and mapped to the
new ones; everything else in hashplug uses the new words only.

numpy only (in fact stdlib only): the serving side imports this module.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from .validation import HashplugTypeError

F = TypeVar("F", bound=Callable[..., Any])

#: The release that removes the old names.
REMOVED_IN = "0.3.0"

#: new keyword -> the old spelling the current caller used (so an error names the value as it was passed).
_SPELLED: ContextVar[dict[str, str] | None] = ContextVar("_SPELLED", default=None)


def spelled(new: str) -> str:
    """The name the caller used for keyword ``new``: its deprecated spelling if it passed that, else ``new``."""
    return (_SPELLED.get() or {}).get(new, new)


def warn_renamed(old: str, new: str, owner: str, *, stacklevel: int = 3) -> None:
    """Emit the one deprecation message for ``old`` -> ``new`` (a keyword, function or option).

    Parameters
    ----------
    old, new : str
        The 0.1.0 name and its replacement.
    owner : str
        The function or command that accepted ``old``.
    stacklevel : int, default=3
        Passed to :func:`warnings.warn` so the warning points at the caller's line.
    """
    warnings.warn(
        f"{owner}: {old} is deprecated and will be removed in hashplug {REMOVED_IN}; use {new}.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Accept old keyword names of a function, mapping each to its new name with a DeprecationWarning.

    Parameters
    ----------
    **renames : str
        ``old=new`` pairs, e.g. ``renamed_kwargs(R="limit")``.

    Returns
    -------
    decorator : callable
        Wraps the function; passing both the old and the new keyword raises
        :class:`~hashplug.validation.HashplugTypeError`.
    """

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            used = {}
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise HashplugTypeError(
                            f"{fn.__name__}: got both {old}= (deprecated) and {new}=; pass only {new}=."
                        )
                    warn_renamed(f"keyword {old}=", f"{new}=", fn.__name__)
                    kwargs[new] = kwargs.pop(old)
                    used[new] = old
            if not used:
                return fn(*args, **kwargs)
            token = _SPELLED.set({**(_SPELLED.get() or {}), **used})
            try:
                return fn(*args, **kwargs)
            finally:
                _SPELLED.reset(token)

        wrapper.__deprecated_kwargs__ = dict(renames)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return deco


def renamed_function(new_fn: F, old: str, new: str) -> F:
    """A deprecated alias ``old`` of ``new_fn`` that warns on every call and otherwise does the same.

    Parameters
    ----------
    new_fn : callable
        The function under its new name.
    old, new : str
        Names for the message (``new`` may be a dotted path).

    Returns
    -------
    alias : callable
    """

    @functools.wraps(new_fn)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warn_renamed(old, new, old)
        return new_fn(*args, **kwargs)

    alias.__name__ = old
    alias.__qualname__ = old
    alias.__doc__ = f"Deprecated alias of :func:`{new}` (removed in {REMOVED_IN}).\n\n{new_fn.__doc__ or ''}"
    return alias  # type: ignore[return-value]

"""The bench's plug-in contract: a :class:`Suite`, the one registry of suites and the ``hashplug bench`` parser.

A suite is one object registered at import (:func:`register_suite`) by the module that defines it; nothing
else lists suite names. ``hashplug bench`` reads the registry: each registered name is its own subcommand
with only the flags the suite declares (:meth:`Suite.add_arguments`), so ``hashplug bench search --help``
lists search's flags and a flag of another suite is a usage error. Adding a suite is one file under
``hashplug/bench/`` (the built-in modules are found by :func:`load_suites`) or, for a suite defined
elsewhere, one module that calls :func:`register_suite` when imported.

This module imports nothing heavy: the CLI builds the ``bench`` parser from it without loading a suite's
runner code (torch, onnx, lancedb are imported inside the suites' ``run``).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from ..validation import HashplugError

__all__ = [
    "Suite", "register_suite", "get_suite", "suite_names", "load_suites", "add_suite_parsers", "run_suite",
    "add_out", "add_data", "add_hp", "add_grid", "add_epochs", "add_png",
]

S = TypeVar("S", bound="Suite")


class Suite:
    """One benchmark suite of ``hashplug bench``: its names, its own flags, ``run``, ``merge`` and ``print``.

    Subclass it, set :attr:`names` and :attr:`help`, define :meth:`add_arguments`, :meth:`run` and
    :meth:`print` (and :meth:`merge` where runs of the suite can be combined), and register an instance
    with :func:`register_suite` (usable as a class decorator). A suite serving several names (one per
    dataset, say) gets the name it was called by in every method.

    Attributes
    ----------
    names : tuple of str
        The subcommand names (``hashplug bench NAME``); the first is the suite's own name.
    help : str
        One line for ``hashplug bench --help``.
    description : str
        The longer text of ``hashplug bench NAME --help`` (default: :attr:`help`).
    """

    names: ClassVar[tuple[str, ...]] = ()
    help: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def add_arguments(self, parser: argparse.ArgumentParser, name: str) -> None:
        """Add this suite's flags (and only them) to its subcommand's ``parser``."""

    def run(self, name: str, args: argparse.Namespace) -> dict[str, Any]:
        """Run the suite ``name`` with its parsed flags; write ``--out`` and return the result."""
        raise NotImplementedError

    #: Set to a method ``merge(name, args) -> result`` where the suite combines the JSONs of several runs
    #: (``--merge PATH ...``: no measuring); ``None`` for a suite without one.
    merge: Callable[[str, argparse.Namespace], dict[str, Any]] | None = None

    def print(self, name: str, result: dict[str, Any], args: argparse.Namespace) -> None:
        """Print ``result`` (a table or a summary) for the terminal."""

    def main(self, name: str, args: argparse.Namespace) -> int:
        """The command: :meth:`merge` when ``--merge`` was given (and the suite has one), else :meth:`run`;
        then :meth:`print`. Returns the exit code.

        :meth:`run` runs under the one thread policy of numeric work (:mod:`hashplug._threads_policy`: numpy's
        BLAS threads; the fits and encodes inside it choose their own count again, from the load of their
        moment), whose setting :func:`hashplug.bench.common.environment` records.
        """
        if self.merge is not None and getattr(args, "merge", None):
            result = self.merge(name, args)
        else:
            from .._threads_policy import numeric_threads

            with numeric_threads(recheck=None):
                result = self.run(name, args)
        self.print(name, result, args)
        return 0


#: name -> suite, in registration order. Filled by the suites' modules when imported.
_REGISTRY: dict[str, Suite] = {}
_BUILTINS_LOADED = False


def register_suite(suite: S | type[S]) -> S | type[S]:
    """Register ``suite`` (an instance, or a :class:`Suite` subclass, instantiated here) under its names.

    Returns its argument, so it serves as a class decorator. A name already taken by another suite is an
    error; registering the same class again (a module re-imported) replaces the entry.
    """
    obj = suite() if isinstance(suite, type) else suite
    if not isinstance(obj, Suite) or not obj.names:
        raise HashplugError(f"{suite!r} is not a hashplug.bench.Suite with names; subclass Suite and set names.")
    for name in obj.names:
        old = _REGISTRY.get(name)
        if old is not None and type(old).__qualname__ != type(obj).__qualname__:
            raise HashplugError(f"bench suite name {name!r} is taken by {type(old).__qualname__}; choose another name.")
    for name in obj.names:
        _REGISTRY[name] = obj
    return suite


def load_suites() -> None:
    """Import every module of :mod:`hashplug.bench` once, so the built-in suites register themselves."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    from .. import bench

    for info in pkgutil.iter_modules(bench.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{bench.__name__}.{info.name}")
    _BUILTINS_LOADED = True


def suite_names() -> list[str]:
    """Every registered suite name (the built-in ones first, in module order)."""
    load_suites()
    return list(_REGISTRY)


def get_suite(name: str) -> Suite:
    """The suite registered under ``name``; an unknown name is one error listing the known ones."""
    load_suites()
    if name not in _REGISTRY:
        raise HashplugError(f"Unknown benchmark {name!r}. Available: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]


def run_suite(name: str, args: argparse.Namespace) -> int:
    """Run the suite ``name`` with its parsed flags (as ``hashplug bench NAME`` does); returns the exit code."""
    return int(get_suite(name).main(name, args) or 0)


# ==================================================================================================== parser
def _unknown(args: argparse.Namespace) -> int:
    get_suite(args.suite)  # raises the error naming the known suites
    return 2


class _AnyName(Mapping[str, Any]):
    """The choices argparse checks a suite name against: the suites' parsers, but any name passes, so an
    unknown one reaches :class:`_SuiteChoice` (and its error) rather than argparse's "invalid choice"."""

    def __init__(self, parsers: dict[str, Any]) -> None:
        self._parsers = parsers

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __getitem__(self, name: str) -> Any:
        return self._parsers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsers)

    def __len__(self) -> int:
        return len(self._parsers)


class _SuiteChoice(argparse._SubParsersAction):
    """The suites' subcommands; an unknown suite name is not an argparse usage error but the bench's own
    one-line error naming the known suites (raised when the command runs, through the CLI's error handler)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices = _AnyName(self._name_parser_map)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values[0] not in self._name_parser_map:
            setattr(namespace, self.dest, values[0])
            namespace.run_bench = _unknown
            return
        super().__call__(parser, namespace, values, option_string)
        extra = getattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, None)
        if extra:  # a flag of another suite, or none at all: the suite's usage and its own error line
            self._name_parser_map[values[0]].error(f"unrecognized arguments: {' '.join(extra)} "
                                                   f"(hashplug bench {values[0]} --help lists its flags)")


def add_suite_parsers(bench: argparse.ArgumentParser) -> None:
    """Add one subcommand per registered suite to the ``hashplug bench`` parser ``bench``.

    Each gets the suite's own flags only, ``suite`` (the name it was called by) and ``run_bench`` (the
    function that runs it) as defaults.
    """
    load_suites()
    subs = bench.add_subparsers(dest="suite", metavar="SUITE", required=True, action=_SuiteChoice,
                                parser_class=argparse.ArgumentParser,
                                title="suites", help="hashplug bench SUITE --help lists the suite's own flags")
    for name, suite in _REGISTRY.items():
        p = subs.add_parser(name, help=suite.help, description=suite.description or suite.help)
        suite.add_arguments(p, name)
        p.set_defaults(run_bench=lambda a, _s=suite: _s.main(a.suite, a))


# ==================================================================================================== flags
def add_out(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    """``--out``: the JSON file to write (every suite has it)."""
    parser.add_argument("--out", default=None, help=f"JSON file to write {what} to")


def add_data(parser: argparse.ArgumentParser, what: str) -> None:
    """``--data``: the dataset file the suite reads (default: the shared data folder)."""
    parser.add_argument("--data", default=None, help=f"{what} (default: its file in ../shared/data)")


def add_hp(parser: argparse.ArgumentParser, what: str) -> None:
    """``--hp``: JSON overrides of the trained methods' parameters."""
    parser.add_argument("--hp", default=None, help=f"JSON overrides: {what}")


def add_grid(parser: argparse.ArgumentParser, what: str) -> None:
    """``--grid``: a JSON validation grid."""
    parser.add_argument("--grid", default=None, help=f"JSON validation grid: {what}")


def add_epochs(parser: argparse.ArgumentParser, what: str = "the encoders that train over epochs (default: "
               "their presets')") -> None:
    """``--epochs``: override the training epochs."""
    parser.add_argument("--epochs", type=int, default=None, help=f"training epochs of {what}")


def add_png(parser: argparse.ArgumentParser, what: str) -> None:
    """``--png``: the figure to write."""
    parser.add_argument("--png", default=None, help=f"write {what} to this PNG file")



class _DeprecatedK(argparse.Action):
    """``--k`` of 0.1.0 where it meant hash lengths: stores into ``lengths`` and says so on stderr."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        import sys

        print(f"{parser.prog}: --k is deprecated (removed in 0.3.0); use --lengths (the hash lengths; k is "
              "the encoders' number of active units).", file=sys.stderr)
        namespace.lengths = values
        namespace.lengths_flag = "--k"


class _RenamedOption(argparse.Action):
    """A 0.1.0 option name that keeps working for one release: stores into the new option's ``dest`` and says so
    on stderr (argparse's own ``deprecated=`` exists only from Python 3.13)."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        import sys

        print(f"{parser.prog}: {option_string} is deprecated (removed in 0.3.0); use {self.new}.", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_max_rows(parser: argparse.ArgumentParser, what: str) -> None:
    """``--max-rows N``: a smaller run on N rows (``what`` says which rows); ``--limit`` is its deprecated
    0.1.0 name (``limit`` is the number of search results everywhere else)."""
    parser.add_argument("--max-rows", dest="max_rows", type=int, default=None, help=what)
    parser.add_argument("--limit", dest="max_rows", type=int, default=None, action=_RenamedOption,
                        new="--max-rows", help=f"deprecated 0.1.0 name of --max-rows: {what}")


def add_lengths(parser: argparse.ArgumentParser, what: str) -> None:
    """``--lengths``: the hash lengths (values of the encoders' ``k``) a suite runs at; ``--k`` is its
    deprecated 0.1.0 name (accepted, with a message on stderr)."""
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help=what)
    parser.add_argument("--k", dest="lengths", type=int, nargs="+", default=None, action=_DeprecatedK,
                        help=f"deprecated 0.1.0 name of --lengths: {what}")


def _read_renamed(args: argparse.Namespace, new: str, old: str, what: str) -> Any:
    """``args.<new>``; a namespace built by hand with the 0.1.0 attribute ``old`` is still read, with a
    DeprecationWarning."""
    value = getattr(args, new, None)
    if value is None and getattr(args, old, None) is not None:
        from .._deprecation import warn_renamed

        warn_renamed(f"the bench argument {old} ({what})", new, "hashplug bench")
        value = getattr(args, old)
    return value


def lengths_of(args: argparse.Namespace) -> list[int] | None:
    """The ``--lengths`` of a parsed command (None: the suite's default); 0.1.0's attribute ``k`` still read."""
    return _read_renamed(args, "lengths", "k", "hash lengths")


def max_rows_of(args: argparse.Namespace) -> int | None:
    """The ``--max-rows`` of a parsed command (None: the whole data); 0.1.0's attribute ``limit`` still read."""
    return _read_renamed(args, "max_rows", "limit", "rows of a smoke run")


def lengths_flag(args: argparse.Namespace) -> str:
    """The flag the user gave the lengths with (``--lengths``, or the deprecated ``--k``), for messages."""
    return getattr(args, "lengths_flag", "--lengths")

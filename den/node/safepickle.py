"""Unpickling call arguments from callers who may not run code on the cluster.

A pickle is a program: unpickling calls whatever callables it names, so full
unpickling would let anyone who may *call* a function run code as the cluster's
user. The daemon therefore decides per call (from den's answer about the caller's
token) whether the caller is a writer of the cluster; everyone else's pickled
arguments are decoded by :class:`DataUnpickler`, which only resolves the globals
that plain data needs:

* builtin containers and scalars (most have opcodes of their own; ``complex``,
  ``range``, ``slice`` and the factories of ``defaultdict`` are named globals),
  ``datetime``, ``decimal.Decimal``, ``uuid.UUID``, ``collections.OrderedDict``
  and ``collections.defaultdict`` (its factory is itself a global, so it can only
  be one of these);
* NumPy arrays, scalars and dtypes, under both NumPy 1 (``numpy.core``) and
  NumPy 2 (``numpy._core``) names, in-band or with protocol-5 out-of-band buffers;
* pandas objects, under the names pandas 2 and pandas 3 pickle them with (found
  by pickling them: frames, series, every index kind, categoricals, extension
  arrays and dtypes, timestamps, timedeltas, periods, intervals, offsets, NaT,
  NA), each named exactly: a whole module is never allowed, since e.g.
  ``pandas.read_pickle`` would unpickle a file;
* what the function's owner lists in its ``pickle_allow`` config.

Each of these may be *called* by the pickle with arguments of the caller's
choosing, which is why only constructors of data are listed. Beyond the names,
the unpickler refuses to change an object it did not create (BUILD on a class, a
function or another global), so a pickle cannot patch attributes of the classes
the function's code uses. ``builtins.getattr`` resolves only the few attributes
in :data:`SAFE_ATTRIBUTES` (tz-aware timestamps pickle ``ZoneInfo._unpickle``
that way).

pandas trusts the state its pickles carry: a frame whose block claims rows its
axis does not have makes pandas 3 write out of bounds (a crash, or worse), and a
categorical's codes or a MultiIndex's are used as unchecked indexes. So pandas
objects are checked as they are made (:func:`_check_pandas_call`,
:func:`_check_pandas_state`, :func:`_check_pandas_made`): block placements inside
their axis, categorical codes inside their categories, MultiIndex codes verified
(its ``verify_integrity`` cannot be turned off), string arrays holding strings.

What this does not stop: a pickle can still make large objects (``bytes(10**11)``,
a list of a huge range), as a large argument can; the worker then fails or dies
and is restarted. NumPy and pandas are large C extensions: the checks above cover
the unchecked state found by reading how their objects unpickle, not every bug
they may have.

A pickle that names no global at all (containers, strings, numbers, bytes: most
calls' arguments) is plain data by construction and goes through the C unpickler.
One that does is decoded again by the pure-Python unpickler, because BUILD can only
be checked there: about 4-8x the C unpickler's time (tens of microseconds for a
typical call, about 1.5 ms for a 1,000-row frame with a string column), nothing
per byte of out-of-band array data (``bench/bench_http_parser.py`` prints it).
Extension codes (copyreg) always go through the allow-list, never its cache.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import re
from collections.abc import Iterable
from typing import Any

#: ``pickle_allow`` entries: dotted names of at least two parts (``pkg.mod.Class``).
DOTTED_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")

_BUILTINS = ("complex", "range", "slice", "list", "dict", "tuple", "set", "frozenset",
             "bytes", "bytearray", "str", "int", "float", "bool")
_DATETIME = ("datetime", "date", "time", "timedelta", "timezone")
_NUMPY = (
    "numpy.dtype",
    "numpy.ndarray",
    # NumPy 1 and NumPy 2 spell the reconstructors' modules differently.
    *(f"numpy.{core}.{name}" for core in ("core", "_core") for name in (
        "multiarray._reconstruct",
        "multiarray.scalar",
        "numeric._frombuffer",
    )),
)
_OFFSETS = ("Day", "Hour", "Minute", "Second", "Milli", "Micro", "Nano", "Week",
            "WeekOfMonth", "MonthEnd", "MonthBegin", "SemiMonthEnd", "SemiMonthBegin",
            "QuarterEnd", "QuarterBegin", "YearEnd", "YearBegin", "BusinessDay",
            "BusinessHour", "BusinessMonthEnd", "BusinessMonthBegin")
# pandas 3 pickles its public classes under "pandas."; pandas 2 under the module
# that defines them. Both spellings, found by pickling each kind of object.
_PANDAS_PUBLIC = (
    "DataFrame", "Series", "Index", "RangeIndex", "MultiIndex", "CategoricalIndex",
    "DatetimeIndex", "TimedeltaIndex", "PeriodIndex", "IntervalIndex", "Categorical",
    "CategoricalDtype", "DatetimeTZDtype", "PeriodDtype", "IntervalDtype", "SparseDtype",
    "StringDtype", "BooleanDtype", "Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype",
    "UInt8Dtype", "UInt16Dtype", "UInt32Dtype", "UInt64Dtype", "Float32Dtype",
    "Float64Dtype", "Interval", "Period", "NA",
)
_PANDAS_ARRAYS = ("BooleanArray", "DatetimeArray", "FloatingArray", "IntegerArray",
                  "IntervalArray", "PeriodArray", "SparseArray", "StringArray",
                  "TimedeltaArray", "ArrowStringArray")
_PANDAS_2 = (
    "pandas.core.frame.DataFrame",
    "pandas.core.series.Series",
    "pandas.core.indexes.base.Index",
    "pandas.core.indexes.range.RangeIndex",
    "pandas.core.indexes.multi.MultiIndex",
    "pandas.core.indexes.category.CategoricalIndex",
    "pandas.core.indexes.datetimes.DatetimeIndex",
    "pandas.core.indexes.timedeltas.TimedeltaIndex",
    "pandas.core.indexes.period.PeriodIndex",
    "pandas.core.indexes.interval.IntervalIndex",
    "pandas.core.arrays.categorical.Categorical",
    "pandas.core.arrays.boolean.BooleanArray",
    "pandas.core.arrays.boolean.BooleanDtype",
    "pandas.core.arrays.datetimes.DatetimeArray",
    "pandas.core.arrays.timedeltas.TimedeltaArray",
    "pandas.core.arrays.period.PeriodArray",
    "pandas.core.arrays.interval.IntervalArray",
    "pandas.core.arrays.sparse.array.SparseArray",
    "pandas.core.arrays.string_.StringArray",
    "pandas.core.arrays.string_.StringDtype",
    "pandas.core.arrays.string_arrow.ArrowStringArray",
    "pandas.core.arrays.floating.FloatingArray",
    "pandas.core.arrays.integer.IntegerArray",
    *(f"pandas.core.arrays.integer.{k}Dtype" for k in (
        "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64")),
    "pandas.core.arrays.floating.Float32Dtype",
    "pandas.core.arrays.floating.Float64Dtype",
    "pandas.core.dtypes.dtypes.CategoricalDtype",
    "pandas.core.dtypes.dtypes.DatetimeTZDtype",
    "pandas.core.dtypes.dtypes.PeriodDtype",
    "pandas.core.dtypes.dtypes.IntervalDtype",
    "pandas.core.dtypes.dtypes.SparseDtype",
    "pandas._libs.interval.Interval",
    "pandas._libs.missing.NA",
    "pandas._libs.tslibs.period.Period",
    "pandas._libs.tslibs.nattype.__nat_unpickle",
)
_PANDAS_BOTH = (
    "pandas.core.internals.managers.BlockManager",
    "pandas.core.internals.managers.SingleBlockManager",
    "pandas.core.indexes.base._new_Index",
    "pandas.core.indexes.datetimes._new_DatetimeIndex",
    "pandas.core.indexes.timedeltas._new_TimedeltaIndex",
    "pandas.core.indexes.period._new_PeriodIndex",
    "pandas.core.indexes.interval._new_IntervalIndex",
    "pandas._libs.internals._unpickle_block",
    "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
    "pandas._libs.sparse.IntIndex",
    "pandas._libs.sparse.BlockIndex",
    "pandas._libs.tslibs.nattype._nat_unpickle",
    "pandas._libs.tslibs.timestamps._unpickle_timestamp",
    "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
    *(f"pandas._libs.tslibs.offsets.{name}" for name in _OFFSETS),
)

#: Every global a restricted pickle may name (``module.qualname``), matched exactly.
SAFE_GLOBALS: frozenset[str] = frozenset({
    *(f"builtins.{name}" for name in _BUILTINS),
    *(f"datetime.{name}" for name in _DATETIME),
    "decimal.Decimal",
    "uuid.UUID",
    "collections.OrderedDict",
    "collections.defaultdict",
    "zoneinfo.ZoneInfo",
    # pandas 2 pickles time zones of pytz (when installed) through these.
    "pytz._p",
    "pytz._UTC",
    *_NUMPY,
    *(f"pandas.{name}" for name in _PANDAS_PUBLIC),
    *(f"pandas.arrays.{name}" for name in _PANDAS_ARRAYS),
    *_PANDAS_2,
    *_PANDAS_BOTH,
})

#: Attributes ``builtins.getattr`` may fetch in a restricted pickle (the class
#: must itself be allowed): how bound class methods are pickled.
SAFE_ATTRIBUTES: frozenset[str] = frozenset({"zoneinfo.ZoneInfo._unpickle"})

_READERS_SEND = (
    "callers with read access send plain data (lists, dicts, numbers, strings, "
    "datetimes, NumPy arrays, pandas objects) or JSON; its owner can allow more types "
    "in the function's pickle_allow config, and writers of the cluster may send any pickle"
)


class PickleRefused(pickle.UnpicklingError):
    """A restricted pickle named a global (or did something) plain data never needs."""

    def __init__(self, what: str, *, action: str = "contain") -> None:
        super().__init__(f"arguments may not {action} {what}: {_READERS_SEND}")
        self.what = what


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


#: Functions (besides classes) whose results real pickles then BUILD (set state on).
_RECONSTRUCTORS = frozenset({
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
})

_Base: Any = pickle._Unpickler  # type: ignore[attr-defined]


class DataUnpickler(_Base):
    """An unpickler that builds plain data only (see the module docstring)."""

    dispatch = dict(_Base.dispatch)

    def __init__(self, file: Any, *, buffers: Iterable[Any] | None = None,
                 extra: frozenset[str] = frozenset()) -> None:
        super().__init__(file, buffers=buffers)
        self._extra = extra
        self._getattr_fn = self._getattr
        # ids of what find_class handed out: module-level objects a pickle may use
        # but never change (modules keep them alive, so the ids stay theirs).
        self._globals: set[int] = set()
        # ids of globals whose results may have their state set (classes aside).
        self._builders: set[int] = set()
        # Objects made here by calling a class (or a reconstructor): the only ones
        # BUILD may set state on. Kept alive so that their ids stay theirs.
        self._made: dict[int, Any] = {}

    def find_class(self, module: str, name: str) -> Any:
        dotted = f"{module}.{name}"
        if dotted == "builtins.getattr":
            found: Any = self._getattr_fn
        elif dotted in SAFE_GLOBALS or dotted in self._extra:
            found = super().find_class(module, name)
            if dotted in _RECONSTRUCTORS or dotted in self._extra:
                self._builders.add(id(found))
        else:
            raise PickleRefused(dotted)
        self._globals.add(id(found))
        return found

    def _getattr(self, obj: Any, name: Any) -> Any:
        dotted = f"{_qualified(obj)}.{name}"
        if isinstance(obj, type) and id(obj) in self._globals and (
            dotted in SAFE_ATTRIBUTES or dotted in self._extra
        ):
            return getattr(obj, name)
        raise PickleRefused(f"getattr({_qualified(obj)}, {name!r})")

    def get_extension(self, code: int) -> None:
        # Never the process-wide cache of extension codes: it skips find_class.
        key = copyreg._inverted_registry.get(code)  # type: ignore[attr-defined]
        if not key:
            raise PickleRefused(f"extension code {code}")
        self.append(self.find_class(*key))

    def _mark_made(self) -> None:
        obj = self.stack[-1]
        self._made[id(obj)] = obj

    def _load_reduce(self) -> None:
        func = self.stack[-2]
        if _is_pandas(func):
            self.stack[-1] = _check_pandas_call(func, self.stack[-1])
        _Base.load_reduce(self)
        _check_pandas_made(self.stack[-1])
        if isinstance(func, type) or id(func) in self._builders:
            self._mark_made()

    def _load_newobj(self) -> None:
        _Base.load_newobj(self)
        self._mark_made()

    def _load_newobj_ex(self) -> None:
        _Base.load_newobj_ex(self)
        self._mark_made()

    def _instantiate(self, klass: Any, args: Any) -> None:  # INST and OBJ
        _Base._instantiate(self, klass, args)
        self._mark_made()

    def _load_build(self) -> None:
        target = self.stack[-2]  # the state is on top
        if id(target) not in self._made or id(target) in self._globals:
            raise PickleRefused(_qualified(target) if isinstance(target, type)
                                else f"a {type(target).__name__} it did not make",
                                action="change")
        _check_pandas_state(target, self.stack[-1])
        _Base.load_build(self)
        _check_pandas_made(target)

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    dispatch[pickle.BUILD[0]] = _load_build


# -- pandas: state its C code trusts ---------------------------------------------------


def _is_pandas(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return isinstance(module, str) and module.split(".", 1)[0] == "pandas"


def _check_placements(blocks: Any, axes: Any) -> None:
    """Every block's rows (its placement) lie inside the items axis, once each."""
    import numpy as np
    from pandas.core.indexes.base import Index
    from pandas.core.internals.blocks import Block

    if not isinstance(axes, (list, tuple)) or not axes or not all(
            isinstance(ax, Index) for ax in axes):
        raise PickleRefused("a pandas block manager whose axes are not indexes", action="make")
    n = len(axes[0])
    seen = 0
    for blk in blocks if isinstance(blocks, (list, tuple)) else (blocks,):
        if not isinstance(blk, Block):
            raise PickleRefused("a pandas block manager holding a non-block", action="make")
        locs = np.asarray(blk.mgr_locs.as_array)
        if locs.size and (locs.min() < 0 or locs.max() >= n):
            raise PickleRefused("a pandas block placed outside its axis", action="make")
        seen += int(locs.size)
    if seen > n:
        raise PickleRefused("pandas blocks that overlap", action="make")


def _check_pandas_call(func: Any, args: Any) -> Any:
    """Check (or fix) the arguments of a pandas reconstructor before it runs."""
    name = getattr(func, "__name__", "")
    if not isinstance(args, tuple):
        return args
    if name in ("BlockManager", "SingleBlockManager") and isinstance(func, type):
        if len(args) < 2:
            raise PickleRefused(f"a pandas {name} without blocks and axes", action="make")
        blocks, axes = args[0], args[1]
        _check_placements(blocks, axes if name == "BlockManager" else [axes])
        return (blocks, axes)  # never verify_integrity=False
    if name == "_new_Index" and len(args) == 2 and isinstance(args[1], dict)             and "verify_integrity" in args[1]:
        return (args[0], {k: v for k, v in args[1].items() if k != "verify_integrity"})
    return args


def _check_pandas_state(target: Any, state: Any) -> None:
    """Check a pandas block manager's pickled state before ``__setstate__`` uses it."""
    if not _is_pandas(target) or type(target).__name__ not in ("BlockManager",
                                                               "SingleBlockManager"):
        return
    try:
        inner = state[3]["0.14.1"]
        axes, blocks = inner["axes"], inner["blocks"]
        from pandas._libs.internals import BlockPlacement
        from pandas.core.indexes.base import ensure_index

        axes = [ensure_index(ax) for ax in axes]
        placements = [BlockPlacement(b["mgr_locs"]) for b in blocks]
    except PickleRefused:
        raise
    except Exception:
        return  # not the state pandas reads: its __setstate__ refuses it
    import numpy as np

    n = len(axes[0]) if axes else 0
    for bp in placements:
        locs = np.asarray(bp.as_array)
        if locs.size and (locs.min() < 0 or locs.max() >= n):
            raise PickleRefused("a pandas block placed outside its axis", action="make")


def _check_pandas_made(obj: Any) -> None:
    """Check a pandas object right after it is made, before anything reads it."""
    if not _is_pandas(type(obj)):
        return
    import numpy as np
    import pandas as pd

    if isinstance(obj, (pd.Categorical, pd.arrays.StringArray)) \
            and getattr(obj, "_ndarray", None) is None:
        return  # made empty by its reconstructor; checked again once BUILD fills it
    if isinstance(obj, pd.Categorical):
        codes, dtype = obj._ndarray, getattr(obj, "_dtype", None)
        if not isinstance(dtype, pd.CategoricalDtype) or not isinstance(codes, np.ndarray) \
                or codes.dtype.kind not in "iu":
            raise PickleRefused("a pandas Categorical without integer codes", action="make")
        n = len(dtype.categories) if dtype.categories is not None else 0
        if codes.size and (codes.min() < -1 or codes.max() >= n):
            raise PickleRefused("a pandas Categorical whose codes are not its categories'",
                                action="make")
    elif isinstance(obj, pd.MultiIndex):
        try:
            obj._verify_integrity()
        except Exception as exc:
            raise PickleRefused(f"a pandas MultiIndex that is not one ({exc})",
                                action="make") from None
    elif isinstance(obj, pd.arrays.StringArray):
        from pandas._libs import lib

        values = obj._ndarray
        if not isinstance(values, np.ndarray) or values.dtype != object \
                or (values.size and not lib.is_string_array(values.ravel(), skipna=True)):
            raise PickleRefused("a pandas StringArray that holds more than strings",
                                action="make")


class _NeedsGlobals(Exception):
    pass


class _NoGlobals(pickle.Unpickler):
    """The C unpickler, for pickles that name no global: nothing in them can be
    called, so they can only build builtin containers and scalars."""

    def find_class(self, module: str, name: str) -> Any:
        raise _NeedsGlobals


def loads(data: bytes | bytearray | memoryview, *, buffers: Iterable[Any] | None = None,
          extra: frozenset[str] = frozenset()) -> Any:
    """Unpickle ``data`` allowing only plain data and the ``extra`` dotted names."""
    if buffers is not None:
        buffers = list(buffers)
    if not copyreg._inverted_registry:  # type: ignore[attr-defined]  # no extension codes
        try:
            return _NoGlobals(io.BytesIO(data), buffers=buffers).load()
        except _NeedsGlobals:
            pass
    return DataUnpickler(io.BytesIO(data), buffers=buffers, extra=extra).load()

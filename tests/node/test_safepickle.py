"""The plain-data unpickler readers' arguments go through (den.node.safepickle):
what plain data needs round-trips, code and patching are refused by name.

The call path itself (who gets which unpickler) is tested against a real daemon in
test_call_access.py; these check the allow-list against the NumPy and pandas
installed here, in-band and with protocol-5 out-of-band buffers.
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import os
import pickle
import subprocess
import uuid
import zoneinfo
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from den.node import safepickle
from den.node.safepickle import PickleRefused

from .evil_pandas import PAYLOADS as EVIL_PANDAS
from .pickle_types import Point

VALUES = [
    1, 2.5, 3j, True, None, "s", b"b", bytearray(b"x"), slice(1, 2, 3), range(5), {1, 2},
    frozenset({2}), (1, "a"), [1, [2]], {"a": {"b": 1}},
    dt.datetime(2024, 1, 2, 3, 4, 5), dt.date(2024, 1, 2), dt.time(1, 2), dt.timedelta(3),
    dt.timezone(dt.timedelta(hours=2)), dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    dt.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
    decimal.Decimal("1.5"), uuid.UUID(int=7), collections.OrderedDict(a=1),
    collections.defaultdict(list, a=[1]),
    np.arange(10), np.float64(1.5), np.int32(3), np.dtype("f8"), np.zeros((3, 3), order="F"),
    np.array(["a", "bb"]), np.array([1, "x"], dtype=object),
    np.zeros(3, dtype=[("a", "i4"), ("b", "f8")]), np.datetime64("2020-01-01"),
    np.arange(6).reshape(2, 3)[:, ::2],
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [1.5, 2.5]}), pd.Series([1, 2], name="s"),
    pd.Index(["a", "b"]), pd.RangeIndex(5), pd.MultiIndex.from_tuples([(1, "a"), (2, "b")]),
    pd.Categorical(["a", "b", "a"]), pd.CategoricalIndex(["a", "b"]),
    pd.Timestamp("2020-01-01"), pd.Timestamp("2020-01-01", tz="UTC"),
    pd.Timestamp("2020-01-01", tz="Europe/Paris"), pd.Timedelta("1D"),
    pd.Period("2020-01", freq="M"), pd.date_range("2020", periods=3, tz="UTC"),
    pd.timedelta_range("1D", periods=2), pd.period_range("2020-01", periods=2, freq="M"),
    pd.IntervalIndex.from_breaks([0, 1, 2]), pd.Interval(0, 1), pd.NaT, pd.NA,
    pd.Series([1, None], dtype="Int64"), pd.Series(["a", None], dtype="string"),
    pd.Series([True, None], dtype="boolean"), pd.Series([1.0], dtype="Float64"),
    pd.Series(pd.arrays.SparseArray([0, 0, 1])),
    pd.Series([1], index=pd.date_range("2020", periods=1, freq="h")),
]


def equal(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, pd.DataFrame | pd.Series | pd.Index):
        return a.equals(b)
    if a is pd.NA or a is pd.NaT:
        return b is a
    if isinstance(a, pd.Categorical):
        return a.equals(b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("oob", [False, True], ids=["in-band", "out-of-band"])
def test_plain_data_round_trips(value, oob) -> None:
    for dumps in (pickle.dumps, cloudpickle.dumps):
        buffers: list[pickle.PickleBuffer] = []
        data = dumps(((value,), {"k": value}), protocol=5,
                     buffer_callback=buffers.append if oob else None)
        args, kwargs = safepickle.loads(data, buffers=[b.raw() for b in buffers])
        assert equal(args[0], value) and equal(kwargs["k"], value)


class Runs:
    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def refused(data: bytes, **kwargs) -> str:
    with pytest.raises(PickleRefused) as exc:
        safepickle.loads(data, **kwargs)
    return str(exc.value)


@pytest.mark.parametrize("payload, name", [
    (Runs(os.system, "true"), "posix.system"),
    (Runs(exec, "1"), "builtins.exec"),
    (Runs(eval, "1"), "builtins.eval"),
    (Runs(subprocess.Popen, ["true"]), "subprocess.Popen"),
    (Runs(pd.read_pickle, "/dev/null"), f"{pd.read_pickle.__module__}.read_pickle"),
    (Runs(np.load, "/dev/null"), "numpy.load"),
    (collections.defaultdict(os.getcwd), "posix.getcwd"),  # a factory is a global too
    (Runs(getattr, pd.DataFrame, "to_pickle"), "getattr(pandas.DataFrame, 'to_pickle')"),
    (Runs(getattr, pd.DataFrame, "__init__"), "getattr(pandas.DataFrame, '__init__')"),
])
def test_code_is_refused_by_name(payload, name) -> None:
    message = refused(pickle.dumps(((payload,), {}), protocol=5))
    assert message.startswith(f"arguments may not contain {name}: callers with read access")


def test_functions_by_value_are_refused() -> None:
    assert "cloudpickle" in refused(cloudpickle.dumps(lambda: 1))


# BUILD on a global: set an attribute of a class or function the pickle names.
PATCH_CLASS = b"\x80\x04\x8c\x06pandas\x8c\x05Index\x93N}\x8c\x05_pwndK\x01s\x86b."
PATCH_FUNCTION = (b"\x80\x04\x8c\x18pandas.core.indexes.base\x8c\n_new_Index\x93"
                  b"N}\x8c\x0c__defaults__K\x01\x85s\x86b.")


def test_objects_it_did_not_make_cannot_be_changed() -> None:
    assert "may not change pandas.Index" in refused(PATCH_CLASS)
    assert not hasattr(pd.Index, "_pwnd")
    assert "may not change" in refused(PATCH_FUNCTION)
    from pandas.core.indexes import base

    assert base._new_Index.__defaults__ is None
    # The same pickles do patch with the full unpickler: the tests are not vacuous.
    pickle.loads(PATCH_CLASS)  # noqa: S301
    assert pd.Index._pwnd == 1
    del pd.Index._pwnd


def test_the_owners_pickle_allow_adds_exact_names() -> None:
    data = pickle.dumps(((Point(1, 2),), {}), protocol=5)
    assert "tests.node.pickle_types.Point" in refused(data)
    assert refused(data, extra=frozenset({"tests.node.pickle_types"})).startswith(
        "arguments may not contain tests.node.pickle_types.Point")
    args, _ = safepickle.loads(data, extra=frozenset({"tests.node.pickle_types.Point"}))
    assert args == (Point(1, 2),)


def test_extension_codes_go_through_the_allow_list() -> None:
    """copyreg extension codes name globals by number, and the unpicklers keep a
    process-wide cache of what they resolved: a cached os.system must not slip by."""
    import copyreg

    copyreg.add_extension("posix", "system", 0x7A)
    try:
        data = pickle.dumps(((os.system,), {}), protocol=2)
        assert b"\x82\x7a" in data  # EXT1 0x7A, not the name
        pickle.loads(data)  # noqa: S301 - the full unpickler resolves (and caches) it
        assert "may not contain posix.system" in refused(data)
    finally:
        copyreg.remove_extension("posix", "system", 0x7A)



@pytest.mark.parametrize("name", sorted(EVIL_PANDAS))
def test_pandas_objects_pandas_would_misread_are_refused(name) -> None:
    make, message = EVIL_PANDAS[name]
    data = pickle.dumps(((make(),), {}), protocol=5)
    assert f"arguments may not make {message}" in refused(data)


def test_the_misplaced_frame_is_live(tmp_path) -> None:
    """Control: the full unpickler takes the frame, and using it fails (pandas 3:
    a segfault) instead of working."""
    import sys

    code = ("import pickle; from tests.node.evil_pandas import frame_outside_axis; "
            "df = pickle.loads(pickle.dumps(frame_outside_axis())); print(df['a'].sum())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                          cwd=str(Path(__file__).parents[2]))
    assert done.returncode != 0

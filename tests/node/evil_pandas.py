"""pandas objects whose pickled state pandas would trust: each loads with the full
unpickler, and then pandas reads or writes out of bounds (crashes) or holds what it
should not. Built without pandas looking at what is wrong with them."""

from __future__ import annotations

import numpy as np
import pandas as pd


class _Reduce:
    def __init__(self, *rv) -> None:
        self.rv = rv

    def __reduce__(self):
        return self.rv


def frame_outside_axis() -> pd.DataFrame:
    """A frame whose one block claims row 10**9 of a one-row axis (pandas 3 writes
    out of bounds on first use)."""
    from pandas._libs.internals import _unpickle_block
    from pandas.core.internals.managers import BlockManager

    blk = _unpickle_block(np.array([[1.0]]), slice(10**9, 10**9 + 1), 2)
    mgr = BlockManager((blk,), [pd.Index(["a"]), pd.RangeIndex(1)])
    df = object.__new__(pd.DataFrame)
    for name, value in {"_mgr": mgr, "_attrs": {}, "_item_cache": {}}.items():
        object.__setattr__(df, name, value)
    object.__setattr__(df, "_flags", pd.Flags(df, allows_duplicate_labels=True))
    return df


def categorical_codes() -> pd.Categorical:
    """Codes far past its two categories (pandas 2 reads out of bounds on use)."""
    cat = pd.Categorical(["a", "b"])
    cat._ndarray[0] = 100
    return cat


def multiindex_unverified() -> object:
    """A MultiIndex made with verify_integrity=False and a code its level lacks."""
    from pandas.core.indexes.base import _new_Index

    return _Reduce(_new_Index, (pd.MultiIndex, {
        "levels": [pd.Index([1])], "codes": [np.array([10**6])], "verify_integrity": False}))


def string_array_ints() -> pd.arrays.StringArray:
    arr = pd.array(["a", "b"], dtype="string")
    if not isinstance(arr, pd.arrays.StringArray):  # pyarrow-backed: not this case
        arr = pd.arrays.StringArray(np.array(["a", "b"], dtype=object))
    arr._ndarray[0] = 5
    return arr


PAYLOADS = {
    "frame_outside_axis": (frame_outside_axis, "a pandas block placed outside its axis"),
    "categorical_codes": (categorical_codes, "a pandas Categorical whose codes"),
    "multiindex_unverified": (multiindex_unverified, "a pandas MultiIndex that is not one"),
    "string_array_ints": (string_array_ints, "a pandas StringArray that holds more"),
}

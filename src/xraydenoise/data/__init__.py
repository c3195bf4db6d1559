"""Data sets: the manifest, patient-grouped splits and readers of public layouts.

>>> from xraydenoise.data import read_manifest, get_split
>>> train = get_split("train")          # development set, committed split for seed 0
>>> train[0].image_id, train[0].patient_key, train[0].get("category")
('fracatlas/fracatlas_IMG0000000.png', 'fracatlas:image:fracatlas/fracatlas_IMG0000000.png', 'normal')

The split functions are imported on first use (PEP 562), so that
``python -m xraydenoise.data.splits`` runs that module cleanly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xraydenoise.data.manifest import (
    GROUP_COLUMNS,
    MANIFEST_COLUMNS,
    Record,
    age_group,
    read_manifest,
    write_manifest,
)
from xraydenoise.data.readers import read_dataset, read_folder, read_mura, read_nih

if TYPE_CHECKING:
    from xraydenoise.data.splits import (
        SPLIT_NAMES,
        committed_split_path,
        get_split,
        get_splits,
        make_splits,
        read_split_file,
        write_split_file,
    )

_SPLIT_NAMES = frozenset(
    {
        "SPLIT_NAMES",
        "committed_split_path",
        "get_split",
        "get_splits",
        "make_splits",
        "read_split_file",
        "write_split_file",
    }
)

__all__ = [
    "GROUP_COLUMNS",
    "MANIFEST_COLUMNS",
    "Record",
    "SPLIT_NAMES",
    "age_group",
    "committed_split_path",
    "get_split",
    "get_splits",
    "make_splits",
    "read_dataset",
    "read_folder",
    "read_manifest",
    "read_mura",
    "read_nih",
    "read_split_file",
    "write_manifest",
    "write_split_file",
]


def __getattr__(name: str) -> Any:
    if name in _SPLIT_NAMES:
        from xraydenoise.data import splits

        return getattr(splits, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SPLIT_NAMES)

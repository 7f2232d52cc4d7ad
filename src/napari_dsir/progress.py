"""Driving the core's long-running generators.

`reconstruct.iter_reconstruct` and `train.iter_train` yield progress records
and return their result; `drive` runs one to the end, calling ``callback``
with each record (a tqdm bar in the CLI; the napari widget uses a
``thread_worker`` instead).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeVar

P = TypeVar("P")
R = TypeVar("R")


def drive(gen: Generator[P, None, R], callback: Callable[[P], None] | None = None) -> R:
    """Run ``gen`` to its end; return its return value."""
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(item)

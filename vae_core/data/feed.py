"""How the training loop gets its batches: the whole set on the training device when it fits,
else streamed from the dataset cache with the next batch read while the current one trains.

Either way a batch is a list of row indices of an :class:`ImageSet`, and what comes out is that
batch as float32 in [0, 1] on the device: the images travel as uint8 (a quarter of the bytes)
and become floats there.
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Iterable, Iterator, Literal

import numpy as np
import torch

from .imageset import ImageSet

Placement = Literal["device", "stream"]
# On the CPU, "the device" is this process's memory: a set bigger than this streams from the
# cache instead, so a large dataset costs a few batches of memory, not its whole size.
IN_MEMORY_MAX_ENV = "LATENT_EXPLORER_IN_MEMORY_MAX_GB"
IN_MEMORY_MAX_GB = 1.0
# On a GPU: at most this share of the free memory goes to a resident dataset.
GPU_SHARE = 0.5


def choose_placement(images: ImageSet, device: torch.device, requested: str = "auto") -> Placement:
    """"device" when ``images`` (as uint8) fit the device's budget, else "stream"; an explicit
    request wins."""
    if requested in ("device", "stream"):
        return requested  # type: ignore[return-value]
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = GPU_SHARE * free
    else:
        budget = float(os.environ.get(IN_MEMORY_MAX_ENV, IN_MEMORY_MAX_GB)) * 2**30
    return "device" if images.nbytes <= budget else "stream"


class DeviceFeed:
    """The whole set copied onto the device once, as uint8; a batch is a row gather there."""

    placement: Placement = "device"

    def __init__(self, images: ImageSet, device: torch.device):
        self.images = images.to(device)
        self.device = device

    def batches(self, index_batches: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
        for idx in index_batches:
            yield self.images[torch.as_tensor(idx, device=self.device)]


class StreamFeed:
    """Batches read from the (memory-mapped) cache by a background thread, ``depth`` ahead of
    the loop; on CUDA through pinned memory, so the copy overlaps the step."""

    placement: Placement = "stream"

    def __init__(self, images: ImageSet, device: torch.device, depth: int = 2):
        self.images, self.device, self.depth = images, device, depth

    def batches(self, index_batches: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
        q: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        pin = self.device.type == "cuda"

        def read() -> None:
            try:
                for idx in index_batches:
                    if stop.is_set():
                        return
                    t = torch.from_numpy(self.images.uint8(np.asarray(idx)))
                    q.put(t.pin_memory() if pin else t)
                q.put(None)
            except BaseException as e:  # handed to the loop, which raises it there
                q.put(e)

        reader = threading.Thread(target=read, name="batch-reader", daemon=True)
        reader.start()
        try:
            while (item := q.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield self.images.to_float(item, self.device)
        finally:
            stop.set()
            while reader.is_alive():  # unblock a reader waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    reader.join(timeout=0.05)


def make_feed(images: ImageSet, device: torch.device, requested: str = "auto") -> DeviceFeed | StreamFeed:
    return DeviceFeed(images, device) if choose_placement(images, device, requested) == "device" \
        else StreamFeed(images, device)

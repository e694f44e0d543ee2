"""Independent CPU blocks of work on single-threaded worker threads.

Used by evaluation-only fast paths (``VAE.log_likelihood_at``) that split a large
computation into cache-sized blocks. Many small torch ops, each split across cores by
intra-op threading, pay a synchronisation at every op, and on a busy machine a thread that
the scheduler parks stalls all the others at each of them. Here each worker runs its blocks
with one intra-op thread (torch keeps the OpenMP and MKL thread counts per thread), the
blocks go to whichever worker is free, and one GIL-free op per block step keeps the cores
busy. The results are the same as running the blocks one after another: each block is
computed by the same ops whichever worker takes it.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

BLOCK_ROWS = 1024  # rows of a block of decoder outputs on the CPU (3 MB at 784 pixels): a cache's worth

_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()
_local = threading.local()


def _single_threaded() -> None:
    torch.get_num_threads()  # torch sets a new thread's counts on first use: let it, then override
    torch.set_num_threads(1)  # this thread's OpenMP and MKL counts (and torch's default for new threads)
    _local.worker = True  # map_blocks called from a block runs inline


def _pool(n: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _pools.get(n)
        if pool is None:
            keep = torch.get_num_threads()
            pool = ThreadPoolExecutor(n, thread_name_prefix="vae-block", initializer=_single_threaded)
            # Start every worker now (each waits at the barrier, so each task takes its own thread),
            # then restore torch's count for threads started later, which each worker's set_num_threads(1)
            # also changed.
            barrier = threading.Barrier(n + 1)
            for _ in range(n):
                pool.submit(barrier.wait)
            barrier.wait()
            torch.set_num_threads(keep)
            _pools[n] = pool
        return pool


@contextmanager
def block_parallel(workers: int | None = None) -> Iterator[int]:
    """Within it, this thread's own torch ops run on one thread and ``map_blocks`` spreads blocks
    over ``workers`` single-threaded workers (default: this thread's torch thread count on
    entry): for a loop whose heavy work goes through ``map_blocks`` and whose other ops are
    small, which then pay no cross-core synchronisation either. Yields the worker count."""
    keep = torch.get_num_threads()
    n = max(1, keep if workers is None else workers)
    before = getattr(_local, "workers", None)
    _local.workers = n
    torch.set_num_threads(1)
    try:
        yield n
    finally:
        torch.set_num_threads(keep)
        _local.workers = before


def map_blocks(fn: Callable[[T], R], items: Iterable[T], device: torch.device | str = "cpu") -> list[R]:
    """[fn(item) for item in items], run on single-threaded workers (as many as
    ``torch.get_num_threads()``, or as ``block_parallel`` says) when that is more than one and
    the work is on the CPU; in order, inline otherwise. ``fn`` runs under torch.no_grad()
    either way. An exception (also KeyboardInterrupt while waiting) cancels the blocks not yet
    started and propagates."""
    items = list(items)
    n = getattr(_local, "workers", None) or torch.get_num_threads()
    if len(items) <= 1 or n <= 1 or torch.device(device).type != "cpu" or getattr(_local, "worker", False):
        with torch.no_grad():
            return [fn(item) for item in items]

    def run(item):
        with torch.no_grad():
            return fn(item)

    futures = [_pool(n).submit(run, item) for item in items]
    try:
        return [f.result() for f in futures]
    finally:
        for f in futures:
            f.cancel()

"""Datasets: a registry of offline sources named by spec strings, their on-disk cache, and
the guarded image decoding shared by dataset files and user uploads.

Modules: ``dataset`` (what a dataset is, the split), ``registry`` (specs, loading, listing),
``cache`` (decoded arrays on disk), ``sources`` (one module per kind of source), ``images``
(the one guarded image decoder), ``upload`` and ``digit`` (a user's picture as a model input).
"""
from .dataset import Dataset, DatasetError, DatasetStatus, split_digest, validation_split
from .registry import DEFAULT_DATASET, DatasetPeek, clear_memo, list_datasets, load_dataset, parse_spec, peek_dataset
from .sources.idx import read_idx

__all__ = ["DEFAULT_DATASET", "Dataset", "DatasetError", "DatasetPeek", "DatasetStatus", "clear_memo",
           "list_datasets", "load_dataset", "parse_spec", "peek_dataset", "read_idx", "split_digest",
           "validation_split"]

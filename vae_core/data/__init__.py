"""Datasets: a registry of offline sources named by spec strings, their on-disk cache, and
the guarded image decoding shared by dataset files and user uploads."""
from .registry import (
    DEFAULT_DATASET,
    Dataset,
    DatasetError,
    DatasetStatus,
    clear_memo,
    list_datasets,
    load_dataset,
    parse_spec,
    read_idx,
)

__all__ = ["DEFAULT_DATASET", "Dataset", "DatasetError", "DatasetStatus", "clear_memo", "list_datasets",
           "load_dataset", "parse_spec", "read_idx"]

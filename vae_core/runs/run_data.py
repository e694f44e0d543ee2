"""A run's data, whichever its kind: the image dataset its config names, or for a topic model the
text corpus counted over the run's own vocabulary.

A text run stores its vocabulary (``vocab.json``, ``data.text.save_vocabulary``) when it starts, so
its topics, samples and traversals read without the corpus, and a corpus that has changed since
(another vocabulary) is refused rather than silently misread.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..data import DatasetError, load_dataset
from ..data.text import TextDataset, Vocabulary, load_text_dataset, load_vocabulary, save_vocabulary
from ..engine.config import RunConfig

VOCAB = "vocab.json"


def load_run_data(config: RunConfig, run_dir: str | Path | None = None,
                  progress: Callable[[int, int], None] | None = None):
    """The config's dataset (a ``Dataset``, or a ``TextDataset`` for a text family). With
    ``run_dir``, a text corpus must give the vocabulary the run stored."""
    tc = config.train
    if not config.is_text:
        return load_dataset(tc.dataset, image_size=tc.image_size, channels=tc.channels, seed=tc.seed,
                            progress=progress)
    stored = run_vocabulary(run_dir) if run_dir is not None and (Path(run_dir) / VOCAB).exists() else None
    options = stored.options if stored is not None else None
    data = load_text_dataset(tc.dataset, vocab_size=config.model.vocab_size, seed=tc.seed,
                             **({"min_df": options.min_df, "max_df": options.max_df,
                                 "drop_encoded_lines": options.drop_encoded_lines} if options else {}))
    if stored is not None and tuple(stored.words) != tuple(data.vocabulary.words):
        differ = sorted(set(stored.words) ^ set(data.vocabulary.words))
        what = (f"{len(differ):,} words differ, such as {', '.join(repr(w) for w in differ[:3])}" if differ
                else "the same words in another order")
        raise DatasetError(f"{tc.dataset} now gives another vocabulary than this run's ({what}): the corpus, or the "
                           "way text is counted, has changed since the run started. Its topics and samples still "
                           "show; start a new run to model the corpus as it is")
    if len(data.vocabulary) != config.model.vocab_size:
        raise DatasetError(f"{tc.dataset} gives a vocabulary of {len(data.vocabulary):,} words, but the model has "
                           f"{config.model.vocab_size:,}")
    return data


def run_vocabulary(run_dir: str | Path) -> Vocabulary:
    """The vocabulary a text run stored when it started."""
    return load_vocabulary(Path(run_dir) / VOCAB)


def store_vocabulary(run_dir: str | Path, data: TextDataset) -> None:
    """Write ``vocab.json`` unless the run already has it (the trainer, when a text run starts)."""
    path = Path(run_dir) / VOCAB
    if not path.exists():
        save_vocabulary(path, data)

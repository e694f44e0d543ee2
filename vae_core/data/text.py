"""Text corpora for topic models: documents named by spec strings, their bag-of-words counts
over a vocabulary fitted on the training documents, and the disk cache that makes a second
load cheap.

A spec is ``20newsgroups`` (shipped with the package, :data:`NEWSGROUPS_FILE`) or
``text:<path>``, where the path is

- a folder of ``.txt`` files, one document each: a file inside a subfolder belongs to the class
  named after the top-level subfolder, a file directly in the folder is unlabelled (-1);
  other files and hidden ones are ignored;
- a ``.jsonl`` file: one JSON object per line with a ``text`` string and an optional ``label``;
- a ``.csv`` file with a header row: a ``text`` column and an optional ``label`` column.

:func:`load_text_corpus` reads a source into a :class:`TextCorpus` (the raw documents, their
labels and the train/test split: the file's own "bydate" split for 20 Newsgroups, a seeded
stratified 80/20 split for the user's text). :func:`load_text_dataset` turns that into a
:class:`TextDataset`: the :class:`Vocabulary` fitted on the training documents and each
document's word counts as a :class:`CountSet` (a sparse matrix handed out as float32 rows a
batch at a time, as an :class:`~vae_core.data.imageset.ImageSet` hands out images).

Bad input is a :class:`~vae_core.data.dataset.DatasetError` naming the file and the problem,
with one exception: an empty document (an empty file, a blank ``text``) is skipped with a
warning, since it carries no words, unless no document at all is left.

Encoding. Files must be UTF-8 (a byte-order mark is allowed). Bytes that are not valid UTF-8
are an error naming the file, the byte offset and the line, rather than decoded as latin-1:
latin-1 accepts every byte, so a file in another encoding would load without a word of
complaint as mojibake whose fragments then become vocabulary words. A NUL byte means the file
is binary (or UTF-16) and is an error too.

The cache (under :func:`vae_core.data.cache.cache_root`, folder ``text/``) has two kinds of
entries, each a folder of plain files (``.npy``, ``.npz`` read with ``allow_pickle=False``,
JSON; never pickles) written to a temporary folder and renamed into place:

- ``corpus-…``: a source's documents, labels and own split, keyed by the source's
  fingerprint: the sha256 of a file's bytes (with its path, size and mtime), or a folder's
  listing (every ``.txt`` file's path, size and mtime). Reading it back costs ~0.1 s where
  decompressing and parsing 20 Newsgroups costs ~1.5 s.
- ``counts-…``: the fitted vocabulary (``vocab.json``) and the train and test count matrices
  (``.npz``), keyed by a digest of the corpus's contents, the split and the vectorizer options
  (and scikit-learn's minor version, whose tokenizer they come from). Fitting the vectorizer on
  20 Newsgroups takes ~15 s on two cores; this is what the cache saves.

Every file's size and CRC-32 are in the entry's manifest and are checked on each load; a
damaged entry is removed and built again, and the dataset's notes say so. The 20 Newsgroups
file itself is checked against its sha256 whenever it is read. Loaded datasets are also
memoised in the process, keyed by the source's stat (or folder listing) and the options.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import threading
import time
import uuid
import warnings
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from . import cache
from .dataset import DatasetError, split_digest

if TYPE_CHECKING:   # scipy and scikit-learn are imported where they are used: a second each
    from scipy.sparse import csr_matrix

__all__ = ["CountSet", "NEWSGROUPS_SHA256", "TextCorpus", "TextDataset", "VectorizerOptions", "Vocabulary",
           "check_corpus", "clear_memo", "is_text_spec", "load_text_corpus", "load_text_dataset",
           "load_vocabulary", "newsgroups_status", "save_vocabulary", "vocabulary_record"]

NEWSGROUPS = "20newsgroups"
NEWSGROUPS_FILE = Path(__file__).resolve().parent / "corpora" / "20newsgroups.jsonl.gz"
NEWSGROUPS_SHA256 = "6ce707a0c03762812b98d8ae266ceba0c892104b139e81ff86cf5bb8ea1e758e"
NEWSGROUPS_BYTES = 8_876_657
NEWSGROUPS_ENV = "LATENT_EXPLORER_20NEWSGROUPS"   # a copy of the file stored elsewhere
TEXT_PREFIX = "text:"

# Letters only (any script), three or more, so the top words are words: numbers, "ax"-style
# fragments and two-letter noise never enter the vocabulary. The look-ahead drops the stem of a
# "n't" contraction ("don't", "didn't", "isn't" would otherwise leave "don", "didn", "isn" among
# the most frequent tokens, and they are not in the English stop-word list).
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b(?!['\u2019]t\b)"
DEFAULT_VOCAB_SIZE = 2000
# A word in a single training document cannot be shared by a topic's documents; one in nearly
# every document says nothing about which topic a document is about. (scikit-learn's
# topic-extraction example uses the same two bounds.)
DEFAULT_MIN_DF = 2
DEFAULT_MAX_DF = 0.95
TEST_FRACTION = 0.2                    # the user's text: the share held out for testing
TEXT_SUFFIX = ".txt"
NOTE_EXAMPLES = 3                      # skipped files named in a note
MEMO_SIZE = 4
CORPUS_ENTRIES_KEPT = 8                # per kind of entry; least recently used go first
COUNTS_ENTRIES_KEPT = 16
CACHE_FORMAT = "latent-explorer-text-cache"
CACHE_VERSION = 1                      # bump when an entry's layout or the tokenization changes
VOCAB_FORMAT = "latent-explorer-vocabulary"
VOCAB_VERSION = 1
_MANIFEST = "meta.json"
_LAST_USED = "last_used"


# =========================================================================== specs


def is_text_spec(spec: object) -> bool:
    """Whether ``spec`` names a text corpus (``20newsgroups`` or ``text:<path>``) rather than an image set."""
    if not isinstance(spec, str):
        return False
    s = spec.strip()
    return s.lower() == NEWSGROUPS or s[: len(TEXT_PREFIX)].lower() == TEXT_PREFIX


def newsgroups_status() -> tuple[bool, str]:
    """Whether the shipped 20 Newsgroups file is there (its size only: hashing waits for a load)."""
    path = _newsgroups_path()
    try:
        size = path.stat().st_size
    except OSError:
        return False, f"the shipped file {path} is missing: reinstall latent-explorer"
    if size != NEWSGROUPS_BYTES:
        return False, (f"the shipped file {path} is damaged ({size:,} bytes, not {NEWSGROUPS_BYTES:,}): "
                       "reinstall latent-explorer")
    return True, "18,846 Usenet posts in 20 groups, shipped with the package (11,314 train / 7,532 test)"


def _newsgroups_path() -> Path:
    env = os.environ.get(NEWSGROUPS_ENV, "").strip()
    return Path(env).expanduser() if env else NEWSGROUPS_FILE


# =========================================================================== the corpus


@dataclass(frozen=True, eq=False)
class TextCorpus:
    """A source's documents before vectorizing.

    documents: every usable document, in the source's order (skipped empty ones are not here).
    labels: (N,) int64 class index of each document, -1 where unlabelled.
    class_names: the classes' names (index = label), or None when no document has a label.
    train_ids, test_ids: sorted positions in ``documents``; together every document once.
    digest: a sha256 of the documents, labels and the source's own split (if any): what the
        vectorized cache is keyed by.
    """

    spec: str
    documents: list[str]
    labels: np.ndarray
    class_names: tuple[str, ...] | None
    train_ids: np.ndarray
    test_ids: np.ndarray
    digest: str
    notes: tuple[str, ...] = ()

    @property
    def train_documents(self) -> list[str]:
        return [self.documents[i] for i in self.train_ids]

    @property
    def test_documents(self) -> list[str]:
        return [self.documents[i] for i in self.test_ids]

    def __repr__(self) -> str:
        classes = None if self.class_names is None else len(self.class_names)
        return (f"TextCorpus(spec={self.spec!r}, train={len(self.train_ids)}, test={len(self.test_ids)}, "
                f"classes={classes})")


@dataclass
class _Parsed:
    """What a source reads into, and a corpus entry in the cache holds."""

    documents: list[str]
    labels: np.ndarray
    class_names: tuple[str, ...] | None
    is_test: np.ndarray | None          # the source's own split (20 Newsgroups); None: split by seed
    notes: tuple[str, ...] = ()
    digest: str = ""


def _where(path: Path) -> str:
    return str(path)


def _skipped_note(what: str, names: list[str]) -> str:
    more = f"; and {len(names) - NOTE_EXAMPLES} more" if len(names) > NOTE_EXAMPLES else ""
    return f"skipped {len(names)} {what}: {'; '.join(names[:NOTE_EXAMPLES])}{more}"


def _decode(data: bytes, where: str) -> str:
    """``data`` as UTF-8 text (a leading byte-order mark dropped), or a DatasetError naming where
    the bytes stop being text."""
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise DatasetError(f"{where} is not a text file: it has a NUL byte at byte offset {nul:,} (line {line:,}). "
                           "Binary files cannot be read as documents; if it is UTF-16 text, save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = e.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        bad, line = data[start : start + 4].hex(" "), data.count(b"\n", 0, start) + 1
        raise DatasetError(f"{where} is not valid UTF-8: byte offset {start:,} (line {line:,}) starts with bytes "
                           f"{bad}. Save the file as UTF-8 (it may be latin-1 or cp1252 text)") from None


def _label_table(raw: list[object]) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Per-document label values (None: unlabelled) -> int64 indices into sorted class names."""
    names = sorted({str(v) for v in raw if v is not None})
    if not names:
        return np.full(len(raw), -1, np.int64), None
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([-1 if v is None else index[str(v)] for v in raw], np.int64), tuple(names)


def _parsed(documents: list[str], raw_labels: list[object], notes: list[str], where: str,
            is_test: np.ndarray | None = None) -> _Parsed:
    if not documents:
        raise DatasetError(f"{where} has no document with any text"
                           + (f" ({notes[0]})" if notes else "") + ": add documents")
    labels, class_names = _label_table(raw_labels)
    return _Parsed(documents, labels, class_names, is_test, tuple(notes))


def _read_newsgroups(path: Path, data: bytes) -> _Parsed:
    text = gzip.decompress(data).decode("utf-8")
    documents, groups, is_test = [], [], []
    # split("\n"), not splitlines(): latin-1 posts hold U+0085 and U+2028 raw inside their strings.
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()
    for n, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            split, group, body = record["split"], record["group"], record["text"]
            if split not in ("train", "test") or not isinstance(group, str) or not isinstance(body, str):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise DatasetError(f"line {n} of {path} is not a 20 Newsgroups record although the file's sha256 "
                               "matches: this version of the loader does not fit the file") from None
        documents.append(body)
        groups.append(group)
        is_test.append(split == "test")
    # Empty posts (515 after cleaning) are kept, as in the file and in scikit-learn: the
    # vectorized dataset drops them, with every other document that has no vocabulary word.
    labels, class_names = _label_table(groups)
    return _Parsed(documents, labels, class_names, np.asarray(is_test, bool))


def _read_jsonl(path: Path, data: bytes) -> _Parsed:
    text = _decode(data, _where(path))
    documents, raw_labels, empty = [], [], []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue   # blank lines (a trailing newline) are not records
        try:
            record = json.loads(line)
        except ValueError as e:
            raise DatasetError(f"line {n} of {path} is not JSON ({e}): each line must be one object such as "
                               '{"text": "...", "label": "..."}') from None
        if not isinstance(record, dict):
            raise DatasetError(f"line {n} of {path} is a JSON {type(record).__name__}, not an object with a "
                               '"text" field')
        if "text" not in record:
            raise DatasetError(f'line {n} of {path} has no "text" field (it has: '
                               f"{', '.join(map(str, list(record)[:8])) or 'no fields'})")
        body, label = record["text"], record.get("label")
        if not isinstance(body, str):
            raise DatasetError(f'line {n} of {path}: "text" is a JSON {type(body).__name__}, not a string')
        if label is not None and (isinstance(label, bool) or not isinstance(label, (str, int))):
            raise DatasetError(f'line {n} of {path}: "label" must be a string or an integer, got {label!r}')
        if not body.strip():
            empty.append(f"line {n}")
            continue
        documents.append(body)
        raw_labels.append(label)
    notes = [_skipped_note(f"empty document(s) in {path.name}", empty)] if empty else []
    return _parsed(documents, raw_labels, notes, _where(path))


def _column(header: list[str], name: str) -> int | None:
    wanted = [i for i, h in enumerate(header) if h.strip().lstrip("\ufeff").lower() == name]
    return wanted[0] if wanted else None


def _read_csv(path: Path, data: bytes) -> _Parsed:
    text = _decode(data, _where(path))
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)    # the default (128 KiB a field) is shorter than a long document
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader, None)
            if header is None:
                raise DatasetError(f"{path} is empty: it needs a header row with a 'text' column")
            text_col, label_col = _column(header, "text"), _column(header, "label")
            if text_col is None:
                shown = ", ".join(repr(h) for h in header[:8]) + (", ..." if len(header) > 8 else "")
                raise DatasetError(f"{path} has no 'text' column (its header row is: {shown}): name the column "
                                   "holding the documents 'text' (and an optional class column 'label')")
            documents, raw_labels, empty = [], [], []
            for row in reader:
                if not row:
                    continue
                line = reader.line_num
                if len(row) <= text_col:
                    raise DatasetError(f"the row ending on line {line} of {path} has {len(row)} field(s), too few "
                                       f"for its 'text' column (column {text_col + 1})")
                body = row[text_col]
                label = row[label_col].strip() if label_col is not None and len(row) > label_col else ""
                if not body.strip():
                    empty.append(f"line {line}")
                    continue
                documents.append(body)
                raw_labels.append(label or None)
        except csv.Error as e:
            raise DatasetError(f"{path} is not valid CSV near line {reader.line_num}: {e}") from None
    finally:
        csv.field_size_limit(old_limit)
    notes = [_skipped_note(f"empty document(s) in {path.name}", empty)] if empty else []
    return _parsed(documents, raw_labels, notes, _where(path))


def _listing(root: Path) -> tuple[list[tuple[str, int, int]], list[str]]:
    """(every ``.txt`` file under ``root`` as (relative path, size, mtime_ns), sorted; the other
    files' relative paths). Hidden files and folders are left out of both."""
    found, other = [], []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            full = Path(here, name)
            rel = full.relative_to(root).as_posix()
            if name.lower().endswith(TEXT_SUFFIX):
                try:
                    st = full.stat()
                except OSError as e:
                    raise DatasetError(f"cannot read {full}: {e.strerror or e}") from None
                found.append((rel, st.st_size, st.st_mtime_ns))
            else:
                other.append(rel)
    return sorted(found), sorted(other)


def _read_folder(root: Path, listing: list[tuple[str, int, int]], other: list[str]) -> _Parsed:
    if not listing:
        also = f" (it holds {len(other)} other file(s), e.g. {other[0]})" if other else ""
        raise DatasetError(f"no {TEXT_SUFFIX} files in {root}{also}: put one document per {TEXT_SUFFIX} file, in "
                           "one subfolder per class if the documents have classes")
    documents, raw_labels, empty = [], [], []
    for rel, _, _ in listing:
        path = root / rel
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DatasetError(f"cannot read {path}: {e.strerror or e}") from None
        body = _decode(data, _where(path))
        if not body.strip():
            empty.append(rel)
            continue
        documents.append(body)
        parts = rel.split("/")
        raw_labels.append(parts[0] if len(parts) > 1 else None)   # the top-level subfolder is the class
    notes = [_skipped_note(f"empty file(s) in {root}", empty)] if empty else []
    if other:
        more = f"; and {len(other) - NOTE_EXAMPLES} more" if len(other) > NOTE_EXAMPLES else ""
        notes.append(f"ignored {len(other)} file(s) in {root} that are not {TEXT_SUFFIX}: "
                     f"{'; '.join(other[:NOTE_EXAMPLES])}{more}")
    return _parsed(documents, raw_labels, notes, _where(root))


@dataclass(frozen=True)
class _Source:
    """A spec resolved to what it reads."""

    spec: str
    kind: str                          # "20newsgroups", "folder", "jsonl" or "csv"
    path: Path

    def stamp(self) -> tuple:
        """Cheap, and different whenever the source may have changed: the in-process memo's key."""
        if self.kind == "folder":
            return tuple(_listing(self.path)[0])
        st = self.path.stat()
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def open(self) -> tuple[dict, Callable[[], _Parsed]]:
        """(the source's cache key, a function that parses it). Reads and hashes a file's bytes
        (checking the shipped file's sha256); for a folder, only lists it."""
        if self.kind == "folder":
            listing, other = _listing(self.path)
            digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
            return ({"kind": "folder", "path": str(self.path), "listing": digest},
                    lambda: _read_folder(self.path, listing, other))
        try:
            data = self.path.read_bytes()
            st = self.path.stat()
        except OSError as e:
            raise DatasetError(f"cannot read {self.path}: {e.strerror or e}") from None
        sha = hashlib.sha256(data).hexdigest()
        if self.kind == NEWSGROUPS:
            if sha != NEWSGROUPS_SHA256:
                raise DatasetError(f"the shipped 20 Newsgroups file {self.path} is damaged: its sha256 is "
                                   f"{sha[:16]}…, not {NEWSGROUPS_SHA256[:16]}… ({len(data):,} bytes; it should be "
                                   f"{NEWSGROUPS_BYTES:,}). Reinstall latent-explorer, or restore "
                                   "vae_core/data/corpora/20newsgroups.jsonl.gz from the repository")
            return {"kind": NEWSGROUPS, "sha256": sha}, lambda: _read_newsgroups(self.path, data)
        reader = _read_jsonl if self.kind == "jsonl" else _read_csv
        return ({"kind": self.kind, "path": str(self.path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                 "sha256": sha}, lambda: reader(self.path, data))


def _source(spec: object) -> _Source:
    if not isinstance(spec, str) or not is_text_spec(spec):
        raise DatasetError(f"not a text corpus spec: {spec!r}; use {NEWSGROUPS!r} or text:<path> (a folder of "
                           f"{TEXT_SUFFIX} files, a .jsonl or a .csv file)")
    name = spec.strip()
    if name.lower() == NEWSGROUPS:
        path = _newsgroups_path()
        if not path.is_file():
            hint = (f" ({NEWSGROUPS_ENV} points there)" if os.environ.get(NEWSGROUPS_ENV, "").strip()
                    else ": reinstall latent-explorer")
            raise DatasetError(f"the shipped 20 Newsgroups file {path} is missing{hint}")
        return _Source(NEWSGROUPS, NEWSGROUPS, path)
    arg = name[len(TEXT_PREFIX):].strip()
    if not arg:
        raise DatasetError("text:<path> needs a path: a folder of .txt files, a .jsonl or a .csv file")
    path = Path(arg).expanduser().resolve()
    if not path.exists():
        raise DatasetError(f"{path} does not exist: text:<path> takes a folder of {TEXT_SUFFIX} files, a .jsonl "
                           "or a .csv file")
    if path.is_dir():
        return _Source(name, "folder", path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".csv"):
        return _Source(name, suffix[1:], path)
    hint = f" (a single {TEXT_SUFFIX} file is one document: put it in a folder with the others)" \
        if suffix == TEXT_SUFFIX else ""
    raise DatasetError(f"{path} is not a folder, a .jsonl or a .csv file{hint}: text:<path> takes one of those")


def load_text_corpus(spec: str, *, seed: int = 0, cache_dir: str | Path | None = None) -> TextCorpus:
    """Read the documents of ``spec`` (``20newsgroups`` or ``text:<path>``) into a TextCorpus.

    seed: chooses the stratified 80/20 train/test split of the user's text (20 Newsgroups has
    its own). Skipped and ignored files are named in the notes and issued as RuntimeWarnings.
    """
    _check_seed(seed)
    corpus, events = _load_corpus(_source(spec), int(seed), cache.cache_root(cache_dir))
    for note in corpus.notes + tuple(events):
        warnings.warn(f"{corpus.spec}: {note}", RuntimeWarning, stacklevel=2)
    return corpus


def _load_corpus(source: _Source, seed: int, root: Path) -> tuple[TextCorpus, list[str]]:
    """The corpus and what happened to its cache entry (for the notes)."""
    key, parse = source.open()
    parsed, events = _cached_corpus(root / "text", key, parse)
    if parsed.is_test is not None:
        train_ids, test_ids = np.flatnonzero(~parsed.is_test), np.flatnonzero(parsed.is_test)
    else:
        # Stratified by class where every document has one (numpy only on a later load: the
        # split is remembered on disk, and scikit-learn's import costs seconds).
        train_ids, test_ids = cache.remembered_split(root, parsed.labels, TEST_FRACTION, seed)
    corpus = TextCorpus(source.spec, parsed.documents, parsed.labels, parsed.class_names,
                        np.asarray(train_ids, np.int64), np.asarray(test_ids, np.int64), parsed.digest,
                        parsed.notes)
    return corpus, events


def check_corpus(corpus: "TextCorpus | TextDataset", topics: int) -> None:
    """Raise a DatasetError when ``corpus`` cannot carry a topic model of ``topics`` topics: it
    must have at least as many training documents with words as there are topics (fewer
    documents than topics leaves topics that no document tells apart)."""
    if isinstance(topics, bool) or not isinstance(topics, (int, np.integer)) or topics < 1:
        raise DatasetError(f"the number of topics must be a positive integer, got {topics!r}")
    if isinstance(corpus, TextDataset):
        n, what = len(corpus.x_train), "training documents with a vocabulary word"
    else:
        n = sum(1 for i in corpus.train_ids if corpus.documents[i].strip())
        what = "non-empty training documents"
    if n < topics:
        raise DatasetError(f"{corpus.spec} has {n:,} {what} but {topics:,} topics were asked for: a topic model "
                           "needs at least as many documents as topics. Add documents or ask for fewer topics")


# =========================================================================== counts


class CountSet:
    """N documents' word counts over a V-word vocabulary: a sparse CSR matrix, handed out as
    float32 dense rows a batch at a time (the whole set is never dense). Read-only.

    The analogue of :class:`~vae_core.data.imageset.ImageSet` for bag-of-words data, with the
    same indexing (an int, a slice, an index array or list, a bool mask, a tensor) and the same
    ``batches(batch_size, device)``, so ``imageset.iter_float_batches`` takes either.
    """

    def __init__(self, counts: "csr_matrix", device: torch.device | str | None = None):
        from scipy import sparse

        if not sparse.issparse(counts) or counts.format != "csr" or counts.ndim != 2:
            raise ValueError(f"counts must be a 2-D scipy.sparse CSR matrix, got {type(counts).__name__}")
        self._csr = counts
        self._device = torch.device(device) if device is not None else torch.device("cpu")

    def __len__(self) -> int:
        return int(self._csr.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(documents, vocabulary words)."""
        return int(self._csr.shape[0]), int(self._csr.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self._csr.shape[1])

    @property
    def csr(self) -> "csr_matrix":
        """The counts as a scipy.sparse CSR matrix (N, V), integer-valued. Do not modify it."""
        return self._csr

    @property
    def nbytes(self) -> int:
        """Bytes of the sparse storage (values, column indices, row pointers)."""
        c = self._csr
        return int(c.data.nbytes + c.indices.nbytes + c.indptr.nbytes)

    @property
    def device(self) -> torch.device:
        """Where rows are handed out (the counts themselves stay sparse in host memory)."""
        return self._device

    @property
    def lengths(self) -> np.ndarray:
        """(N,) int64: each document's number of vocabulary words (its counts' sum)."""
        return np.asarray(self._csr.sum(axis=1), dtype=np.int64).reshape(-1)

    def __repr__(self) -> str:
        return f"CountSet({len(self)} documents x {self.vocab_size} words, {self._csr.nnz:,} non-zeros, sparse)"

    def _positions(self, idx) -> tuple[np.ndarray | slice, bool]:
        n = len(self)
        if isinstance(idx, (int, np.integer)) and not isinstance(idx, bool):
            i = int(idx)
            if not -n <= i < n:
                raise IndexError(f"document {i} is out of range for a set of {n}")
            return np.array([i % n], np.int64), True
        if isinstance(idx, slice):
            return idx, False
        a = idx.detach().cpu().numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)
        if a.dtype == bool:
            if a.shape != (n,):
                raise IndexError(f"a boolean mask for a set of {n} must have shape ({n},), got {a.shape}")
            a = np.flatnonzero(a)
        local = a.astype(np.int64).reshape(-1)
        if len(local) and (local.min() < -n or local.max() >= n):
            raise IndexError(f"an index is out of range for a set of {n}")
        return local % max(n, 1), False

    def counts(self, idx) -> "csr_matrix":
        """The sparse rows ``idx`` (a copy), in the order asked for."""
        rows, _ = self._positions(idx)
        return self._csr[rows]

    def _dense(self, rows, device: torch.device | str | None) -> torch.Tensor:
        dense = self._csr[rows].toarray().astype(np.float32, copy=False)
        t = torch.from_numpy(dense)
        target = torch.device(device) if device is not None else self._device
        return t if target.type == "cpu" else t.to(target, non_blocking=True)

    def __getitem__(self, idx) -> torch.Tensor:
        """Rows ``idx`` as float32 counts on this set's device: (V,) for one int, (B, V) otherwise."""
        rows, single = self._positions(idx)
        out = self._dense(rows, None)
        return out[0] if single else out

    def batches(self, batch_size: int, device: torch.device | str | None = None) -> Iterator[torch.Tensor]:
        """Every document in order, ``batch_size`` rows at a time, as float32 (B, V) on ``device``
        (default: this set's)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        for i in range(0, len(self), batch_size):
            yield self._dense(slice(i, i + batch_size), device)

    def subset(self, idx) -> "CountSet":
        """The documents ``idx`` as a new CountSet (their sparse rows are copied; no row is densified)."""
        return CountSet(self.counts(idx), self._device)

    def to(self, device: torch.device | str) -> "CountSet":
        """The same counts, handed out on ``device``. The matrix stays sparse in host memory and
        each batch is densified there and copied: a dense copy of the set on the device would be
        N x V floats (20 Newsgroups: 88 MB), its sparse form is 3 MB."""
        return self if torch.device(device) == self._device else CountSet(self._csr, device)

    def numpy(self) -> np.ndarray:
        """Every row as dense float32 (N, V): for small sets only."""
        return self._csr.toarray().astype(np.float32)


# =========================================================================== the vocabulary


def _is_fraction(v) -> bool:
    return isinstance(v, float)


@dataclass(frozen=True)
class VectorizerOptions:
    """How documents become counts: scikit-learn's CountVectorizer with these settings.

    vocab_size: the most frequent words kept (over the training documents; ``max_features``).
    min_df, max_df: a word is kept only if its document frequency in the training documents is
        at least ``min_df`` and at most ``max_df`` (an int: documents; a float: a fraction).
    drop_encoded_lines: leave out lines of 40 or more characters without a space (``ENCODED_LINE``).
    """

    vocab_size: int = DEFAULT_VOCAB_SIZE
    min_df: int | float = DEFAULT_MIN_DF
    max_df: int | float = DEFAULT_MAX_DF
    token_pattern: str = TOKEN_PATTERN
    stop_words: str = "english"
    lowercase: bool = True
    drop_encoded_lines: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "min_df", "max_df"):   # numpy scalars would not go into JSON
            if isinstance(getattr(self, name), np.integer):
                object.__setattr__(self, name, int(getattr(self, name)))
        v = self.vocab_size
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= 1_000_000:
            raise DatasetError(f"vocab_size must be an integer from 1 to 1,000,000, got {v!r}")
        for name in ("min_df", "max_df"):
            d = getattr(self, name)
            ok = (not isinstance(d, bool)) and (
                (isinstance(d, (int, np.integer)) and d >= 1) or (isinstance(d, float) and 0.0 <= d <= 1.0))
            if not ok:
                raise DatasetError(f"{name} must be a number of documents (an integer >= 1) or a fraction of "
                                   f"them (a float from 0.0 to 1.0), got {d!r}")
        if _is_fraction(self.max_df) and self.max_df == 0.0:
            raise DatasetError("max_df=0.0 keeps no word: use a fraction above 0 or a number of documents")
        if self.stop_words != "english":
            raise DatasetError(f"stop_words must be 'english', got {self.stop_words!r}")
        try:
            re.compile(self.token_pattern)
        except (re.error, TypeError) as e:
            raise DatasetError(f"token_pattern {self.token_pattern!r} is not a regular expression: {e}") from None

    def record(self) -> dict:
        return {"vocab_size": int(self.vocab_size), "min_df": self.min_df, "max_df": self.max_df,
                "token_pattern": self.token_pattern, "stop_words": self.stop_words, "lowercase": self.lowercase,
                "drop_encoded_lines": self.drop_encoded_lines}

    @classmethod
    def from_record(cls, record: dict) -> "VectorizerOptions":
        if isinstance(record, dict) and "drop_encoded_lines" not in record:  # a vocabulary stored before it existed
            record = {**record, "drop_encoded_lines": False}
        if not isinstance(record, dict) or set(record) != set(cls().record()):
            raise DatasetError(f"vectorizer options must be an object with {sorted(cls().record())}")
        return cls(**record)

    def _preprocessor(self):
        if not self.drop_encoded_lines:
            return None  # the vectorizer's own (lower-casing as ``lowercase`` says)
        return _without_encoded_lines if self.lowercase else (lambda text: ENCODED_LINE.sub("", text))

    def vectorizer(self, vocabulary: Sequence[str] | None = None):
        """The scikit-learn CountVectorizer these options describe (with a fixed vocabulary: no fit)."""
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(lowercase=self.lowercase, stop_words=self.stop_words,
                               preprocessor=self._preprocessor(),
                               token_pattern=self.token_pattern, min_df=self.min_df, max_df=self.max_df,
                               max_features=self.vocab_size, dtype=np.int32,
                               vocabulary=None if vocabulary is None else list(vocabulary))


# A line of 40 or more characters without a space is no prose: uuencoded or base64 binaries (20
# Newsgroups' posts carry a few, whose fragments "max", "giz", "bhj" would otherwise fill a topic of
# their own), long URLs, hashes.
ENCODED_LINE = re.compile(r"^[ \t]*\S{40,}[ \t]*$", re.MULTILINE)


def _without_encoded_lines(text: str) -> str:
    """A document lower-cased (the vectorizer's own step, which a preprocessor replaces) without
    its encoded lines."""
    return ENCODED_LINE.sub("", text).lower()


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """The words a topic model is over (column j of every count matrix is ``words[j]``) and the
    options they were fitted with: everything needed to vectorize new text the same way, with
    no corpus. Stored as ``vocab.json`` by :func:`save_vocabulary`."""

    words: tuple[str, ...]
    options: VectorizerOptions = field(default_factory=VectorizerOptions)

    def __post_init__(self) -> None:
        if not self.words:
            raise DatasetError("a vocabulary needs at least one word")
        if len(set(self.words)) != len(self.words):
            raise DatasetError("a vocabulary's words must be distinct")

    def __len__(self) -> int:
        return len(self.words)

    def transform(self, texts: str | Iterable[str]) -> CountSet:
        """Count the vocabulary's words in ``texts`` (one string, or several) exactly as the
        training documents were counted (the same tokens, no refit). Words outside the
        vocabulary are ignored; a text with none of its words is a row of zeros."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise DatasetError("Vocabulary.transform takes strings")
        x = self.options.vectorizer(self.words).transform(texts).tocsr()
        x.sort_indices()
        return CountSet(x)

    def record(self) -> dict:
        return {"format": VOCAB_FORMAT, "version": VOCAB_VERSION, "words": list(self.words),
                "options": self.options.record()}

    @classmethod
    def from_record(cls, record: object, where: str = "the vocabulary") -> "Vocabulary":
        try:
            if not isinstance(record, dict) or record.get("format") != VOCAB_FORMAT:
                raise DatasetError(f"it is not a {VOCAB_FORMAT} record")
            if record.get("version") != VOCAB_VERSION:
                raise DatasetError(f"it is version {record.get('version')!r}; this version reads {VOCAB_VERSION}")
            words = record.get("words")
            if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
                raise DatasetError("its 'words' is not a list of non-empty strings")
            return cls(tuple(words), VectorizerOptions.from_record(record.get("options")))
        except DatasetError as e:
            raise DatasetError(f"{where} cannot be used: {e}") from None


def vocabulary_record(dataset: "TextDataset | Vocabulary") -> dict:
    """The JSON-able record of a dataset's vocabulary and vectorizer options (what ``vocab.json`` holds)."""
    vocab = dataset.vocabulary if isinstance(dataset, TextDataset) else dataset
    return vocab.record()


def save_vocabulary(path: str | Path, dataset: "TextDataset | Vocabulary") -> Path:
    """Write the vocabulary and its options as JSON to ``path`` (e.g. ``runs/<name>/vocab.json``),
    atomically, so a run can be explored and fed new text without its corpus."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
    tmp.write_text(json.dumps(vocabulary_record(dataset), ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_vocabulary(path: str | Path) -> Vocabulary:
    """The :class:`Vocabulary` stored by :func:`save_vocabulary`."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path} does not exist") from None
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path} is not a readable vocabulary file ({type(e).__name__}: {e})") from None
    return Vocabulary.from_record(record, str(path))


# =========================================================================== the dataset


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors with == would raise
class TextDataset:
    """A vectorized text corpus. Read-only: loads are memoised and shared.

    x_train, x_test: the documents' counts over ``vocab``. A document with no vocabulary word is
        dropped from both (it carries nothing to learn from or to score); ``notes`` say how many.
    y_train, y_test: int64 labels, -1 where unlabelled.
    docs_train, docs_test: the raw text of each row of ``x_train`` / ``x_test``.
    train_doc_ids, test_doc_ids: each row's position among the corpus's training / test documents
        (for 20 Newsgroups: the post's index in the bydate split), which does not move when the
        vocabulary options change which documents are dropped.
    """

    spec: str
    vocabulary: Vocabulary
    x_train: CountSet
    y_train: torch.Tensor
    x_test: CountSet
    y_test: torch.Tensor
    class_names: tuple[str, ...] | None
    docs_train: tuple[str, ...]
    docs_test: tuple[str, ...]
    train_doc_ids: np.ndarray
    test_doc_ids: np.ndarray
    notes: tuple[str, ...] = ()

    @property
    def vocab(self) -> list[str]:
        return list(self.vocabulary.words)

    @property
    def name(self) -> str:
        """The spec it was loaded by (as ``Dataset.name``)."""
        return self.spec

    @property
    def input_shape(self) -> tuple[int]:
        """(V,): one count per vocabulary word."""
        return (len(self.vocabulary),)

    @property
    def options(self) -> VectorizerOptions:
        return self.vocabulary.options

    def __repr__(self) -> str:
        classes = None if self.class_names is None else len(self.class_names)
        return (f"TextDataset(spec={self.spec!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
                f"vocab={len(self.vocabulary)}, classes={classes})")


_memo: OrderedDict[tuple, TextDataset] = OrderedDict()
_memo_lock = threading.Lock()
_key_locks: dict[tuple, threading.Lock] = {}


def clear_memo() -> None:
    """Forget the text datasets loaded in this process (the disk cache is kept)."""
    with _memo_lock:
        _memo.clear()


def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise DatasetError(f"seed must be an integer from 0 to 2**32-1, got {seed!r}")


def load_text_dataset(spec: str, *, vocab_size: int = DEFAULT_VOCAB_SIZE, min_df: int | float = DEFAULT_MIN_DF,
                      max_df: int | float = DEFAULT_MAX_DF, seed: int = 0,
                      cache_dir: str | Path | None = None, drop_encoded_lines: bool = True) -> TextDataset:
    """Load a text corpus by spec and count its words over a vocabulary fitted on its training
    documents. Deterministic for a given (spec, options, seed); offline only.

    vocab_size: how many words the vocabulary keeps at most (the most frequent ones).
    min_df, max_df: document-frequency bounds of a vocabulary word (see :class:`VectorizerOptions`).
    drop_encoded_lines: leave out lines without a space of 40+ characters (see :class:`VectorizerOptions`).
    seed: chooses the train/test split of the user's text (20 Newsgroups has its own).
    Notes on skipped files and on the cache are issued as RuntimeWarnings; how many documents
    had no vocabulary word (and were dropped) is in the dataset's notes only.
    """
    options = VectorizerOptions(vocab_size, min_df, max_df, drop_encoded_lines=drop_encoded_lines)
    _check_seed(seed)
    source = _source(spec)
    root = cache.cache_root(cache_dir)
    try:
        stamp = source.stamp()
    except OSError as e:
        raise DatasetError(f"cannot read {source.path}: {e.strerror or e}") from None
    key = (source.spec, source.kind, str(source.path), stamp, json.dumps(options.record()), int(seed), str(root))
    with _memo_lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key]
        lock = _key_locks.setdefault(key, threading.Lock())
    with lock:   # one build per key at a time; other corpora load in parallel
        with _memo_lock:
            if key in _memo:
                return _memo[key]
        corpus, events = _load_corpus(source, int(seed), root)
        ds = _vectorized(corpus, options, root, events)
        for note in corpus.notes + tuple(events):
            warnings.warn(f"{ds.spec}: {note}", RuntimeWarning, stacklevel=2)
        with _memo_lock:
            _memo[key] = ds
            while len(_memo) > MEMO_SIZE:
                _memo.popitem(last=False)
            _key_locks.pop(key, None)
    return ds


def _sklearn_minor() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return ".".join(version("scikit-learn").split(".")[:2])
    except PackageNotFoundError:
        raise DatasetError("scikit-learn is missing: run `pip install scikit-learn==1.9.*`") from None


def _fit_counts(corpus: TextCorpus, options: VectorizerOptions) -> tuple[Vocabulary, "csr_matrix", "csr_matrix"]:
    """Fit the vocabulary on the training documents; count the words of both splits."""
    train_docs, test_docs = corpus.train_documents, corpus.test_documents
    n = len(train_docs)
    if n == 0:
        raise DatasetError(f"{corpus.spec} has no training document: add documents")
    lo = options.min_df * n if _is_fraction(options.min_df) else options.min_df
    hi = options.max_df * n if _is_fraction(options.max_df) else options.max_df
    if lo > n:
        raise DatasetError(f"{corpus.spec}: min_df={options.min_df!r} asks for words in at least {lo:,g} documents "
                           f"but there are only {n:,} training documents: lower min_df")
    if hi < lo:
        raise DatasetError(f"{corpus.spec}: max_df={options.max_df!r} allows a word in at most {hi:g} of the {n:,} "
                           f"training documents, fewer than min_df={options.min_df!r} requires ({lo:g}): raise "
                           "max_df or lower min_df")
    vectorizer = options.vectorizer()
    try:
        x_train = vectorizer.fit_transform(train_docs)
    except ValueError:
        analyze = vectorizer.build_analyzer()
        if not any(analyze(d) for d in train_docs):
            raise DatasetError(f"{corpus.spec}: the vocabulary came out empty: none of the {n:,} training documents "
                               "has a word of 3 or more letters that is not an English stop word (the, and, of, "
                               "...). Topic models need documents with content words") from None
        raise DatasetError(f"{corpus.spec}: the vocabulary came out empty: no word is in at least "
                           f"min_df={options.min_df!r} and at most max_df={options.max_df!r} of the {n:,} "
                           "training documents. Lower min_df or raise max_df") from None
    x_test = vectorizer.transform(test_docs)
    words = tuple(str(w) for w in vectorizer.get_feature_names_out())
    x_train, x_test = x_train.tocsr(), x_test.tocsr()
    x_train.sort_indices()
    x_test.sort_indices()
    return Vocabulary(words, options), x_train, x_test


def _vectorized(corpus: TextCorpus, options: VectorizerOptions, root: Path, events: list[str]) -> TextDataset:
    key = {"corpus": corpus.digest, "documents": len(corpus.documents), "test": split_digest(corpus.test_ids),
           "options": options.record(), "sklearn": _sklearn_minor()}
    vocab, x_train_all, x_test_all = _cached_counts(root / "text", key, corpus, options, events)
    keep_train = np.flatnonzero(np.diff(x_train_all.indptr) > 0)
    keep_test = np.flatnonzero(np.diff(x_test_all.indptr) > 0)
    notes = list(corpus.notes) + list(events)
    for what, kept, total in (("training", keep_train, len(corpus.train_ids)),
                              ("test", keep_test, len(corpus.test_ids))):
        if len(kept) < total:
            notes.append(f"dropped {total - len(kept):,} of {total:,} {what} documents with no word of the vocabulary "
                         "(empty, or only stop words, numbers and rare words)")
    if len(corpus.test_ids) and not len(keep_test):
        notes.append("no test document has a word of the vocabulary: the test set is empty")
    train_rows, test_rows = corpus.train_ids[keep_train], corpus.test_ids[keep_test]
    as_long = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    return TextDataset(
        spec=corpus.spec, vocabulary=vocab,
        x_train=CountSet(x_train_all[keep_train]), y_train=as_long(corpus.labels[train_rows]),
        x_test=CountSet(x_test_all[keep_test]), y_test=as_long(corpus.labels[test_rows]),
        class_names=corpus.class_names,
        docs_train=tuple(corpus.documents[i] for i in train_rows),
        docs_test=tuple(corpus.documents[i] for i in test_rows),
        train_doc_ids=keep_train.astype(np.int64), test_doc_ids=keep_test.astype(np.int64), notes=tuple(notes))


# =========================================================================== the disk cache


class _Damaged(Exception):
    """A cache entry that cannot be used; the message says why."""


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _entry_path(base: Path, kind: str, key: dict) -> Path:
    return base / f"{kind}-{_digest([CACHE_VERSION, kind, key])[:24]}"


def _crc(data: bytes) -> str:
    return f"{zlib.crc32(data):08x}"


def _read_entry(entry: Path, kind: str, key: dict) -> tuple[dict, dict[str, bytes]] | None:
    """(the manifest, each listed file's bytes), all checked against the manifest; None when the
    entry is absent; _Damaged when it is there but unusable."""
    if not entry.is_dir():
        return None
    try:
        meta = json.loads((entry / _MANIFEST).read_text())
    except FileNotFoundError:
        raise _Damaged("it has no manifest") from None
    except (OSError, ValueError) as e:
        raise _Damaged(f"its manifest is unreadable ({type(e).__name__})") from None
    try:
        if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION or meta.get("kind") != kind:
            raise _Damaged(f"its manifest is {meta.get('format')!r} version {meta.get('version')!r}")
        if meta["key"] != json.loads(json.dumps(key)):
            raise _Damaged("its manifest describes another source")
        blobs = {}
        for name, spec in meta["files"].items():
            if "/" in name or name.startswith("."):
                raise _Damaged(f"its manifest lists a file named {name!r}")
            try:
                data = (entry / name).read_bytes()
            except OSError:
                raise _Damaged(f"{name} is missing") from None
            if len(data) != spec["bytes"]:
                raise _Damaged(f"{name} is {len(data):,} bytes but the manifest says {spec['bytes']:,}")
            if _crc(data) != spec["crc32"]:
                raise _Damaged(f"{name} fails its checksum (its bytes changed after it was written)")
            blobs[name] = data
    except (KeyError, TypeError, AttributeError) as e:
        raise _Damaged(f"its manifest is malformed ({type(e).__name__}: {e})") from None
    try:
        os.utime(entry / _LAST_USED)
    except OSError:
        pass   # a read-only cache still loads
    return meta, blobs


def _write_entry(base: Path, entry: Path, kind: str, key: dict, files: dict[str, bytes], extra: dict) -> None:
    """Write an entry's files and manifest to a temporary folder and rename it into place (a
    reader sees all of it or none). Best effort: a cache that cannot be written costs only time."""
    tmp = base / f".tmp-{entry.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        meta = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "kind": kind, "created": time.time(),
                "key": key, "files": {n: {"bytes": len(d), "crc32": _crc(d)} for n, d in files.items()}, **extra}
        (tmp / _MANIFEST).write_text(json.dumps(meta, indent=1))
        (tmp / _LAST_USED).touch()
        if entry.exists():
            _remove(entry)
        os.replace(tmp, entry)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (entry / _MANIFEST).is_file():   # not merely another process's entry winning the race
            warnings.warn(f"could not write the text cache {entry}: {e}", RuntimeWarning, stacklevel=4)
        return
    _evict(base, kind, CORPUS_ENTRIES_KEPT if kind == "corpus" else COUNTS_ENTRIES_KEPT, keep=entry.name)


def _remove(entry: Path) -> None:
    trash = entry.with_name(f".trash-{entry.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(entry, trash)   # aside first: a reader never sees half an entry
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _evict(base: Path, kind: str, kept: int, keep: str) -> None:
    """Remove the least recently used entries of ``kind`` beyond ``kept`` (never ``keep``, nor
    one used in the last ten minutes: another process may be reading it)."""
    entries = []
    for p in base.glob(f"{kind}-*"):
        try:
            entries.append((max((p / n).stat().st_mtime for n in (_MANIFEST, _LAST_USED) if (p / n).exists()), p))
        except (OSError, ValueError):
            continue
    now = time.time()
    for used, p in sorted(entries, reverse=True)[kept:]:
        if p.name != keep and now - used >= cache.EVICT_GRACE_S:
            _remove(p)


def _load_or_build(base: Path, kind: str, key: dict, build: Callable[[], tuple[dict[str, bytes], dict]],
                   read: Callable[[dict, dict[str, bytes]], object], events: list[str], what: str):
    """``read(manifest, files)`` of the entry for (kind, key), built first (``build() -> (files,
    manifest extras)``) when it is missing or damaged; a damaged entry is reported in ``events``."""
    entry = _entry_path(base, kind, key)
    try:
        found = _read_entry(entry, kind, key)
        if found is not None:
            return read(*found)
    except _Damaged as e:
        _remove(entry)
        events.append(f"the cached {what} in {entry} was damaged ({e}); it was removed and built again")
    files, extra = build()
    _write_entry(base, entry, kind, key, files, extra)
    meta = {"key": key, **extra}
    try:
        return read(meta, files)
    except _Damaged as e:   # what was just built does not read back: a bug, not a damaged cache
        raise RuntimeError(f"the {what} built for {key} does not read back: {e}") from None


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _from_npy(data: bytes, name: str, dtype, shape: tuple | None = None) -> np.ndarray:
    try:
        a = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise _Damaged(f"{name} is not a readable array ({e})") from None
    if a.dtype != dtype or (shape is not None and a.shape != shape) or a.ndim != 1:
        raise _Damaged(f"{name} holds {a.dtype} {a.shape}, not {np.dtype(dtype)} {shape}")
    return a


def _cached_corpus(base: Path, key: dict, parse: Callable[[], _Parsed]) -> tuple[_Parsed, list[str]]:
    events: list[str] = []

    def build():
        p = parse()
        lengths = np.fromiter((len(d) for d in p.documents), np.int64, len(p.documents))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # surrogatepass: a JSON "\ud800" escape is a lone surrogate that strict UTF-8 cannot hold.
        files = {"documents.bin": "".join(p.documents).encode("utf-8", "surrogatepass"),
                 "offsets.npy": _npy(offsets), "labels.npy": _npy(p.labels.astype(np.int64))}
        if p.is_test is not None:
            files["is_test.npy"] = _npy(p.is_test.astype(bool))
        h = hashlib.sha256()
        for name in sorted(files):
            h.update(name.encode() + b"\0" + files[name])
        h.update(json.dumps(p.class_names).encode())
        extra = {"class_names": None if p.class_names is None else list(p.class_names),
                 "notes": list(p.notes), "digest": h.hexdigest(), "documents": len(p.documents)}
        return files, extra

    def read(meta: dict, files: dict[str, bytes]) -> _Parsed:
        try:
            n = int(meta["documents"])
            text = files["documents.bin"].decode("utf-8", "surrogatepass")
            offsets = _from_npy(files["offsets.npy"], "offsets.npy", np.int64, (n + 1,))
            labels = _from_npy(files["labels.npy"], "labels.npy", np.int64, (n,))
            is_test = (_from_npy(files["is_test.npy"], "is_test.npy", np.bool_, (n,))
                       if "is_test.npy" in files else None)
            names = meta["class_names"]
            class_names = None if names is None else tuple(str(c) for c in names)
            digest, notes = str(meta["digest"]), tuple(str(s) for s in meta["notes"])
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
            raise _Damaged(f"its files are malformed ({type(e).__name__}: {e})") from None
        if offsets[0] != 0 or offsets[-1] != len(text) or (np.diff(offsets) < 0).any():
            raise _Damaged("offsets.npy does not cut documents.bin into documents")
        if labels.min(initial=-1) < -1 or labels.max(initial=-1) >= len(class_names or ()):
            raise _Damaged("labels.npy holds labels outside the class names")
        bounds = offsets.tolist()
        documents = [text[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        return _Parsed(documents, labels, class_names, is_test, notes, digest)

    parsed = _load_or_build(base, "corpus", key, build, read, events, "corpus")
    return parsed, events


def _csr_npz(x: "csr_matrix") -> bytes:
    from scipy import sparse

    buf = io.BytesIO()
    sparse.save_npz(buf, x, compressed=True)
    return buf.getvalue()


def _csr_from_npz(data: bytes, name: str, shape: tuple[int, int]) -> "csr_matrix":
    """A CSR matrix from ``save_npz`` bytes, read with ``allow_pickle=False`` and checked whole."""
    from scipy import sparse

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            fmt = z["format"].item()
            fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
            stored = tuple(int(s) for s in z["shape"])
            if fmt != "csr" or stored != shape:
                raise _Damaged(f"{name} holds a {fmt} matrix of shape {stored}, not csr {shape}")
            x = sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=shape)
        x.check_format(full_check=True)
    except _Damaged:
        raise
    except (ValueError, KeyError, OSError, EOFError, zlib.error) as e:
        raise _Damaged(f"{name} is not a readable sparse matrix ({type(e).__name__}: {e})") from None
    if x.dtype.kind not in "iu" or (x.nnz and x.data.min() < 1):
        raise _Damaged(f"{name} does not hold positive integer counts")
    return x


def _cached_counts(base: Path, key: dict, corpus: TextCorpus, options: VectorizerOptions,
                   events: list[str]) -> tuple[Vocabulary, "csr_matrix", "csr_matrix"]:
    def build():
        vocab, x_train, x_test = _fit_counts(corpus, options)
        files = {"vocab.json": json.dumps(vocab.record(), ensure_ascii=False).encode("utf-8"),
                 "train.npz": _csr_npz(x_train), "test.npz": _csr_npz(x_test)}
        return files, {"spec": corpus.spec}

    def read(meta: dict, files: dict[str, bytes]):
        try:
            vocab = Vocabulary.from_record(json.loads(files["vocab.json"].decode("utf-8")), "vocab.json")
        except (DatasetError, ValueError, KeyError) as e:
            raise _Damaged(str(e)) from None
        if vocab.options != options:
            raise _Damaged("its vocabulary was fitted with other options")
        v = len(vocab)
        x_train = _csr_from_npz(files["train.npz"], "train.npz", (len(corpus.train_ids), v))
        x_test = _csr_from_npz(files["test.npz"], "test.npz", (len(corpus.test_ids), v))
        return vocab, x_train, x_test

    return _load_or_build(base, "counts", key, build, read, events, "vocabulary and counts")

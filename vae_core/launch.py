"""The ``latent-explorer`` command: start the Streamlit app from the source checkout.

Equivalent to ``streamlit run app.py`` in the repository root (where ``.streamlit/config.toml``
binds the server to 127.0.0.1); extra arguments go to ``streamlit run``, for example
``latent-explorer --server.port 8502``. The app lives beside this package, so the command
needs a source checkout installed with ``pip install -e .``. Streamlit runs as a child
process: the engine itself never imports it.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    app = SOURCE_ROOT / "app.py"
    if not app.is_file() or not (SOURCE_ROOT / "pages").is_dir():
        print(f"error: the app is not beside the engine ({app} is missing). Install Latent Explorer from its "
              "source checkout with `pip install -e .`, or run `streamlit run app.py` there.", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), *args]
    try:
        return subprocess.call(cmd, cwd=SOURCE_ROOT, env={**os.environ, "PYTHONPATH": _pythonpath()})
    except KeyboardInterrupt:
        return 130


def _pythonpath() -> str:
    """The checkout first, so ``pages`` and ``vae_core`` resolve to it whatever the caller's cwd."""
    rest = os.environ.get("PYTHONPATH")
    return str(SOURCE_ROOT) + (os.pathsep + rest if rest else "")


if __name__ == "__main__":
    sys.exit(main())

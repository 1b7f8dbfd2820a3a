"""Optional accelerated build: compile ``book.py`` with mypyc (about 3x faster matching).

    .venv/bin/python -m execution.paper.build_accel          # build the extension next to book.py
    .venv/bin/python -m execution.paper.build_accel --clean  # remove it (back to pure Python)

Python imports the compiled extension in preference to ``book.py`` when it is present, and falls back to
the pure-Python module when it is not, so nothing else changes. Needs a C compiler and the Python headers;
the build runs in a temporary directory and copies only the two ``.so`` files in. Don't commit them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def built() -> list[Path]:
    return sorted(HERE.glob("book*.so")) + sorted(HERE.glob("book*.pyd"))


def main() -> None:
    ap = argparse.ArgumentParser(description="compile execution/paper/book.py with mypyc")
    ap.add_argument("--clean", action="store_true")
    args = ap.parse_args()
    for f in built():
        f.unlink()
    if args.clean:
        return
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "execution" / "paper"
        pkg.mkdir(parents=True)
        (pkg.parent / "__init__.py").write_text("")
        (pkg / "__init__.py").write_text("")
        shutil.copy(HERE / "book.py", pkg / "book.py")
        mypyc = Path(sys.executable).with_name("mypyc")
        subprocess.run([str(mypyc), "execution/paper/book.py"], cwd=tmp, check=True)  # noqa: S603
        for f in list(pkg.glob("book*.so")) + list(pkg.glob("book*.pyd")):
            shutil.copy(f, HERE / f.name)
    print("built:", ", ".join(f.name for f in built()))


if __name__ == "__main__":
    main()

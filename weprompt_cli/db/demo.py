"""The demo shop database behind `--db demo`: an SQLite file built on first use from shipped SQL.

`demo_shop.sql` is the schema and seeded rows of `training/sqleval.py`'s `build_db()`, the data the
demo model was trained and scored on (`tests/test_db_demo.py` holds the two together). After the
training data changes, regenerate it from the checkout's root:

    python -c "from training.sqleval import build_db; print(*build_db().iterdump(), sep=chr(10))" \\
        > weprompt_cli/db/demo_shop.sql

The file is built into a cache folder the caller passes (the app's home cache), named by the hash
of the script, so a new script builds a new file and `/run --write` on the demo changes only the
user's copy.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from pathlib import Path

from weprompt_cli.atomic import fsync_dir
from weprompt_cli.errors import DiskError

DEMO_SQL = Path(__file__).resolve().parent / "demo_shop.sql"


def demo_database(cache_dir: Path, *, fresh: bool = False) -> Path:
    """The path of the demo shop SQLite file under `cache_dir`, built there when missing (or when `fresh`)."""
    script = DEMO_SQL.read_text(encoding="utf-8")
    digest = hashlib.sha256(script.encode("utf-8")).hexdigest()[:12]
    path = Path(cache_dir) / f"demo-shop-{digest}.sqlite"
    if path.is_file() and not fresh:
        return path
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Build beside the target and rename over it: a crash never leaves a half-built demo database.
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-demo-shop-", suffix=".sqlite", dir=path.parent)
        os.close(fd)
        conn = sqlite3.connect(tmp_name)
        try:
            conn.executescript(script)
            conn.commit()
        finally:
            conn.close()
        os.replace(tmp_name, path)
        tmp_name = None
        fsync_dir(path.parent)
    except OSError as exc:
        raise DiskError(f"cannot build the demo database: {exc.strerror or exc}", path=path) from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return path

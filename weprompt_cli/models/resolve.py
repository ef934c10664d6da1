"""`--model NAME|PATH` to a checkpoint file: catalog names, paths, the config default, the demo."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from weprompt_cli.errors import InvalidFileError, NotFoundError
from weprompt_cli.models.catalog import CatalogModel, load_catalog
from weprompt_cli.paths import Home, demo_model_dir

if TYPE_CHECKING:
    from weprompt_cli.config import Config

DEMO_FILE_NAME = "weprompt-demo-rwkv7.pth"


@dataclass(frozen=True)
class ResolvedModel:
    """The checkpoint to load, and what it is."""

    path: Path
    is_demo: bool  # the chat says so once
    entry: CatalogModel | None = None  # the catalog entry, when named by one
    tokenizer_path: Path | None = None  # a tokenizer file pull fetched beside it, if any

    def __fspath__(self) -> str:
        return str(self.path)


def demo_model_path() -> Path:
    """The embedded demo checkpoint (NotFoundError when this install lacks it)."""
    try:
        from weprompt_cli.demo import DEMO_MODEL_PATH  # type: ignore[attr-defined]

        path = Path(DEMO_MODEL_PATH)
    except (ImportError, AttributeError):
        path = demo_model_dir() / DEMO_FILE_NAME
    if not path.is_file():
        raise NotFoundError(
            "no model configured and the embedded demo model is not in this install",
            path=path,
            hint="weprompt models pull g1-0.1b, then --model g1-0.1b (or: weprompt config set default_model g1-0.1b)",
        )
    return path


def _demo(home: Home) -> ResolvedModel:
    entry = load_catalog().find("demo")
    return ResolvedModel(demo_model_path(), True, entry)


def resolve_model(arg: str | None, *, config: Config | None = None, home: Home) -> ResolvedModel:
    """The checkpoint for `--model` (a catalog name or a path), else config's default, else the demo."""
    if arg is None or not str(arg).strip():
        if config is None:
            from weprompt_cli.config import load_config

            config = load_config(home)
        arg = config.default_model
        if arg is None:
            return _demo(home)
    arg = str(arg).strip()
    if arg == "demo":
        return _demo(home)
    catalog = load_catalog()
    entry = catalog.find(arg)
    if entry is not None:
        path = entry.local_path(home)
        if not path.is_file():
            raise NotFoundError(f"model {arg!r} is not downloaded", path=path, hint=f"weprompt models pull {arg}")
        tok = entry.tokenizer_path(home)
        if tok is not None and not tok.is_file():
            raise NotFoundError(f"the tokenizer of {arg!r} is missing", path=tok, hint=f"weprompt models pull {arg}")
        return ResolvedModel(path, False, entry, tok)
    path = Path(arg).expanduser()
    if path.is_dir():
        raise InvalidFileError("--model is a folder, not a checkpoint file", path=path)
    if not path.is_file() and path.suffix != ".pth" and path.with_name(path.name + ".pth").is_file():
        path = path.with_name(path.name + ".pth")  # the rwkv package's habit of naming models without .pth
    if not path.is_file():
        looks_like_path = "/" in arg or "\\" in arg or arg.endswith(".pth") or arg.startswith(("~", "."))
        if looks_like_path:
            raise NotFoundError("no model file here", path=path, hint="check the path, or see 'weprompt models list'")
        close = difflib.get_close_matches(arg, catalog.names(), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see 'weprompt models list' for catalog names"
        raise NotFoundError(f"no catalog model or file called {arg!r}", hint=hint)
    path = path.resolve()
    tok = path.with_name(path.stem + ".tokenizer.json")
    return ResolvedModel(path, False, None, tok if tok.is_file() else None)

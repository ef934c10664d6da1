"""Reading persona files: strict validation, user files over built-ins, 1.0 aliases.

Every problem with a file becomes one `InvalidFileError` whose message names the field
and whose `path` is the file, so the CLI prints one line that says what to fix where.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from weprompt_cli.errors import InvalidFileError, NotFoundError, UnsafeError, UsageError
from weprompt_cli.params import OVERRIDABLE_KEYS, check_setting
from weprompt_cli.paths import Home, builtin_personas_dir
from weprompt_cli.personas.model import NO_SCHEMA_TEXT, SCHEMA_PLACEHOLDER, Persona, PersonaSource, fill_schema

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SCHEMA_VERSION = 1
DEFAULT_PERSONA = "general"

# WePrompt 1.0 names (the HTTP API still accepts them) -> persona names; matched without case.
PERSONA_ALIASES: dict[str, str] = {"SQLAdvisor": "sql", "ProjectAdvisor": "project"}

NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")

REQUIRED_KEYS = ("schema_version", "name", "title", "description", "system")
OPTIONAL_KEYS = ("stop", "sampling", "examples", "db", "schema", "think", "state")
THINK_MODES = ("off", "on", "bit", "lot")
EXAMPLE_KEYS = ("user", "assistant")
SAMPLING_KEYS = OVERRIDABLE_KEYS  # the same rules as config.toml, flags and /set (weprompt_cli.params)
# `scheme://user:secret@host`, or a password in the query: a file must not carry a database password.
_URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@?#]*:[^/@?#]*@|[?&](password|passwd|sslpassword)=",
                           re.IGNORECASE)


def validate_persona_name(name: str) -> str:
    """`name` itself when it is a valid persona name; raises otherwise.

    Names are file stems: letters, digits, '.', '_' and '-', not starting with '.', so a
    name can never reach outside the personas folder.
    """
    if "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise UnsafeError(
            f"invalid persona name {name!r}: a name may not contain a path",
            hint="use letters, digits, '.', '_' and '-' only",
        )
    if not NAME_RE.fullmatch(name):
        raise UsageError(
            f"invalid persona name {name!r}",
            hint="use 1 to 64 letters, digits, '.', '_' and '-', not starting with '.'",
        )
    return name


def _toml_type(value: Any) -> str:
    """The TOML name of a parsed value's type, for messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return "date/time"


class _Checker:
    """Builds the one-line errors for one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, detail: str, hint: str | None = None) -> InvalidFileError:
        return InvalidFileError(f"invalid persona: {detail}", path=self.path, hint=hint)

    def unknown_keys(self, table: dict[str, Any], allowed: Iterable[str], where: str) -> None:
        allowed = tuple(allowed)
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                guess = f" (did you mean '{close[0]}'?)" if close else ""
                raise self.fail(f"unknown key '{key}'{where}{guess}", hint="allowed: " + ", ".join(allowed))

    def missing_keys(self, table: dict[str, Any], required: Iterable[str], where: str) -> None:
        for key in required:
            if key not in table:
                raise self.fail(f"missing required field '{key}'{where}")

    def string(self, value: Any, field: str, *, non_empty: bool) -> str:
        if not isinstance(value, str):
            raise self.fail(f"field {field} must be a string (got {_toml_type(value)})")
        # Multi-line TOML strings keep the newline before the closing quotes; the chat
        # format adds its own separators, so surrounding whitespace is never meant.
        value = value.strip()
        if non_empty and not value:
            raise self.fail(f"field {field} must not be empty")
        return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError("persona file not found", path=path) from None
    except OSError as exc:
        raise InvalidFileError(f"cannot read persona file: {exc.strerror or exc}", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidFileError(f"invalid persona: not UTF-8 text (byte {exc.start})", path=path) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidFileError(f"invalid persona: malformed TOML {_toml_error_detail(exc)}", path=path) from None
    except RecursionError:
        # tomllib parses nested arrays recursively: a hostile file must not hide every persona.
        raise InvalidFileError("invalid persona: arrays or tables nested too deeply", path=path) from None


def _toml_error_detail(exc: Exception) -> str:
    """`at line L, column C: <what>` from a TOML parser error (tomllib or tomli)."""
    message = str(exc).splitlines()[0] if str(exc) else "syntax error"
    line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    # Older parsers put the position only in the text: "... (at line 3, column 5)".
    match = re.fullmatch(r"(.*?)\s*\(at line (\d+), column (\d+)\)", message)
    if match:
        message = match.group(1)
        line, col = line or int(match.group(2)), col or int(match.group(3))
    else:
        message = re.sub(r"\s*\(at (end of document|line \d+, column \d+)\)$", "", message)
        if line is None and "end of document" in str(exc):
            return f"at the end of the file: {message}"
    if line is not None and col is not None:
        return f"at line {line}, column {col}: {message}"
    return f": {message}"


def _builtin_dir() -> Path:
    return builtin_personas_dir()


def _infer_source(path: Path) -> PersonaSource:
    try:
        in_builtin = path.resolve().parent == _builtin_dir().resolve()
    except OSError:
        in_builtin = False
    return "built-in" if in_builtin else "user"


def load_persona_file(path: str | Path, *, source: PersonaSource | None = None) -> Persona:
    """The validated persona in `path`; raises `InvalidFileError` naming the bad field.

    `source` defaults to "built-in" for a file in the built-in folder, else "user".
    """
    path = Path(path)
    check = _Checker(path)
    data = _read_toml(path)

    # The version first: a newer file may use keys this version does not know.
    if "schema_version" not in data:
        raise check.fail("missing required field 'schema_version'", hint=f"add 'schema_version = {SCHEMA_VERSION}'")
    version = data["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise check.fail(f"field 'schema_version' must be an integer (got {_toml_type(version)})")
    if version != SCHEMA_VERSION:
        raise check.fail(
            f"unsupported schema_version {version} (this WePrompt reads {SCHEMA_VERSION})",
            hint="upgrade WePrompt" if version > SCHEMA_VERSION else f"set 'schema_version = {SCHEMA_VERSION}'",
        )

    check.unknown_keys(data, REQUIRED_KEYS + OPTIONAL_KEYS, "")
    check.missing_keys(data, REQUIRED_KEYS, "")
    name = check.string(data["name"], "'name'", non_empty=True)
    title = check.string(data["title"], "'title'", non_empty=True)
    description = check.string(data["description"], "'description'", non_empty=False)
    system = check.string(data["system"], "'system'", non_empty=True)
    stop = _stop_strings(check, data.get("stop", []))
    sampling = _sampling(check, data.get("sampling", {}))
    examples = _examples(check, data.get("examples", []))
    db = _db(check, data["db"]) if "db" in data else None
    think = _think(check, data["think"]) if "think" in data else None
    state_file, state_sha256 = _state(check, data["state"], path) if "state" in data else (None, None)
    schema = check.string(data["schema"], "'schema'", non_empty=True) if "schema" in data else None
    template = system if SCHEMA_PLACEHOLDER in system else None
    if schema is not None and template is None:
        raise check.fail("field 'schema' is set but 'system' has no {schema} placeholder",
                         hint="write {schema} where the system prompt names the tables, or remove 'schema'")
    if template is not None:
        # Until a database is connected, {schema} is the file's default (or says there is none).
        system = fill_schema(template, schema if schema is not None else NO_SCHEMA_TEXT)

    if name != path.stem:
        raise check.fail(
            f"field 'name' is {name!r} but the file is named {path.name!r}",
            hint=f'set name = "{path.stem}", or rename the file to {name}.toml',
        )
    try:
        validate_persona_name(name)
    except (UsageError, UnsafeError) as exc:
        raise check.fail(exc.message, hint=exc.hint) from None

    return Persona(
        name=name,
        title=title,
        description=description,
        system=system,
        examples=examples,
        sampling=sampling,
        stop=stop,
        source=source if source is not None else _infer_source(path),
        path=path,
        db=db,
        template=template,
        schema=schema,
        think=think,
        state_file=state_file,
        state_sha256=state_sha256,
    )


def _think(check: _Checker, value: Any) -> str:
    mode = check.string(value, "'think'", non_empty=True)
    if mode not in THINK_MODES:
        raise check.fail(f"field 'think' must be one of {', '.join(THINK_MODES)} (got {mode!r})")
    return mode


def _state(check: _Checker, value: Any, path: Path) -> tuple[Path, str]:
    """The persona's state file: relative to the persona file, else under `<home>/states/`; and its sha256.

    The file is only found and hashed here; its tensors are read (safely) and checked against
    the model when a chat starts, where the model is known.
    """
    from weprompt_cli.hashing import file_sha256

    name = check.string(value, "'state'", non_empty=True)
    target = Path(name).expanduser()
    candidates = [target] if target.is_absolute() else [path.parent / target, path.parent.parent / "states" / target]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return candidate.resolve(), file_sha256(candidate)
            except OSError as exc:
                raise check.fail(f"cannot read the state file {candidate}: {exc.strerror or exc}") from None
    raise check.fail(
        f"state file {name!r} not found (looked in {', '.join(str(c.parent) for c in candidates)})",
        hint="put the file beside the persona, or under <home>/states/",
    )


def _db(check: _Checker, value: Any) -> str:
    """The persona's database: a path, `demo` or a URL, never with a password in it."""
    db = check.string(value, "'db'", non_empty=True)
    if _URL_PASSWORD.search(db):
        raise check.fail("field 'db' holds a password; a persona file must not",
                         hint="remove it from the URL and set $WEPROMPT_DB_PASSWORD instead")
    return db


def _stop_strings(check: _Checker, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise check.fail(f"field 'stop' must be an array of strings (got {_toml_type(value)})")
    stops = []
    for i, item in enumerate(value, start=1):
        if not isinstance(item, str):
            raise check.fail(f"field 'stop' item {i} must be a string (got {_toml_type(item)})")
        if not item:
            raise check.fail(f"field 'stop' item {i} must not be empty")
        stops.append(item)  # not stripped: whitespace in a stop string is meaningful
    return tuple(stops)


def _sampling(check: _Checker, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise check.fail(
            f"'sampling' must be a table (got {_toml_type(value)})", hint="write it as a [sampling] section"
        )
    check.unknown_keys(value, SAMPLING_KEYS, " in [sampling]")
    sampling: dict[str, Any] = {}
    for key, item in value.items():
        try:
            sampling[key] = check_setting(key, item)
        except ValueError as exc:
            got = item if isinstance(item, (int, float)) and not isinstance(item, bool) else _toml_type(item)
            raise check.fail(f"field '{key}' in [sampling] {exc} (got {got})") from None
    return sampling


def _examples(check: _Checker, value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise check.fail(
            f"'examples' must be an array of tables (got {_toml_type(value)})",
            hint="write each as an [[examples]] section",
        )
    examples = []
    for i, item in enumerate(value, start=1):
        where = f" in [[examples]] #{i}"
        if not isinstance(item, dict):
            raise check.fail(f"'examples' item {i} must be a table with user and assistant (got {_toml_type(item)})")
        check.unknown_keys(item, EXAMPLE_KEYS, where)
        check.missing_keys(item, EXAMPLE_KEYS, where)
        user = check.string(item["user"], f"'user'{where}", non_empty=True)
        assistant = check.string(item["assistant"], f"'assistant'{where}", non_empty=True)
        examples.append((user, assistant))
    return tuple(examples)


# -- finding personas ---------------------------------------------------------------


def persona_dirs(home: Home) -> list[tuple[Path, PersonaSource]]:
    """The folders searched, first match wins: the user's, then the built-in one.

    Run from a checkout, the home is the checkout, so both are the same folder: it is
    listed once, as built-in.
    """
    builtin = _builtin_dir()
    user = home.personas
    try:
        same = user.resolve() == builtin.resolve()
    except OSError:
        same = False
    if same:
        return [(builtin, "built-in")]
    return [(user, "user"), (builtin, "built-in")]


def _persona_files(folder: Path) -> Iterator[Path]:
    """The `*.toml` files of `folder` by name; hidden files (temporary writes) are skipped."""
    try:
        entries = sorted(folder.iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.suffix == ".toml" and not entry.name.startswith(".") and entry.is_file():
            yield entry


def _dir_error(folder: Path, exc: OSError) -> InvalidFileError:
    return InvalidFileError(f"cannot read the personas folder: {exc.strerror or exc}", path=folder)


def available_persona_names(home: Home) -> list[str]:
    """The names of every persona file found (valid or not), sorted."""
    names: set[str] = set()
    for folder, _ in persona_dirs(home):
        try:
            names.update(p.stem for p in _persona_files(folder) if NAME_RE.fullmatch(p.stem))
        except OSError:
            continue
    return sorted(names)


def resolve_persona_name(name: str, home: Home) -> str:
    """The persona name that `name` means: itself, or the persona its 1.0 alias stands for."""
    validate_persona_name(name)
    if name in available_persona_names(home):
        return name
    for alias, target in PERSONA_ALIASES.items():
        if alias.lower() == name.lower():
            return target
    return name


def find_persona(name: str, *, home: Home) -> Persona:
    """The persona called `name` (a user file wins over a built-in; 1.0 aliases work).

    Raises `NotFoundError` listing the available names, `InvalidFileError` when the file
    that would be used is broken (never falling back to a built-in silently).
    """
    target = resolve_persona_name(name, home)
    for folder, source in persona_dirs(home):
        try:
            # Match names exactly even on case-insensitive file systems.
            for path in _persona_files(folder):
                if path.stem == target:
                    return load_persona_file(path, source=source)
        except OSError as exc:
            raise _dir_error(folder, exc) from None
    available = [p.name for p in list_personas(home)[0]]  # broken files are not offered
    close = difflib.get_close_matches(name, available, n=1)
    guess = f" (did you mean '{close[0]}'?)" if close else ""
    listing = ", ".join(available) if available else "none"
    raise NotFoundError(
        f"unknown persona '{name}'{guess}; available: {listing}",
        hint=f"run 'weprompt personas' to see them, or 'weprompt personas new {name}' to create it",
    )


def list_personas(home: Home) -> tuple[list[Persona], list[InvalidFileError]]:
    """Every persona in effect, by name, and the errors of files that could not be read.

    A user file hides the built-in of the same name; when the user file is broken the
    name is reported as an error and not listed, as `find_persona` would refuse it too.
    """
    personas: list[Persona] = []
    errors: list[InvalidFileError] = []
    seen: set[str] = set()
    for folder, source in persona_dirs(home):
        try:
            files = list(_persona_files(folder))
        except OSError as exc:
            errors.append(_dir_error(folder, exc))
            continue
        for path in files:
            if path.stem in seen:
                continue
            seen.add(path.stem)
            if not NAME_RE.fullmatch(path.stem):
                errors.append(
                    InvalidFileError(
                        f"invalid persona: {path.stem!r} is not a valid persona name",
                        path=path,
                        hint="rename the file: letters, digits, '.', '_' and '-' only",
                    )
                )
                continue
            try:
                personas.append(load_persona_file(path, source=source))
            except InvalidFileError as exc:
                errors.append(exc)
            except NotFoundError as exc:  # removed while listing
                errors.append(InvalidFileError(exc.message, path=path))
    personas.sort(key=lambda p: p.name)
    return personas, errors

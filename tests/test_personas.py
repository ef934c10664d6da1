"""Persona files: validation, user overrides, aliases, templates and the state cache key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from weprompt_cli.errors import ConflictError, InvalidFileError, NotFoundError, UnsafeError, UsageError, WePromptError
from weprompt_cli.paths import builtin_personas_dir
from weprompt_cli.personas import (
    DEFAULT_PERSONA,
    Persona,
    find_persona,
    list_personas,
    load_persona_file,
    persona_state_key,
    persona_state_path,
    persona_template,
    write_persona_template,
)
from weprompt_cli.paths import resolve_home

BUILTIN_FILES = sorted(builtin_personas_dir().glob("*.toml"))

VALID = '''\
schema_version = 1
name = "{name}"
title = "Test Persona"
description = "A persona for tests."
system = """
You are a test persona.
"""
stop = ["User:"]

[sampling]
temperature = 0.5
top_p = 0.9
top_k = 10
presence_penalty = 0.1
frequency_penalty = 0.2
penalty_decay = 0.99
max_tokens = 50

[[examples]]
user = "Hi"
assistant = "Hello."
'''


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def valid_text(name: str = "tester") -> str:
    return VALID.format(name=name)


MINIMAL = 'schema_version = 1\nname = "tester"\ntitle = "T"\ndescription = ""\nsystem = "S"\n'


# -- built-ins ----------------------------------------------------------------------


def test_builtin_folder_has_sql_project_and_general() -> None:
    assert {p.stem for p in BUILTIN_FILES} >= {"sql", "project", "general"}


@pytest.mark.parametrize("path", BUILTIN_FILES, ids=lambda p: p.stem)
def test_each_builtin_loads_and_validates(path: Path) -> None:
    persona = load_persona_file(path)
    assert persona.name == path.stem
    assert persona.source == "built-in"
    assert persona.title and persona.system
    for user, assistant in persona.examples:
        assert user and assistant


def test_builtins_are_listed_without_errors() -> None:
    personas, errors = list_personas(home=resolve_home())
    assert errors == []
    assert {"sql", "project", "general"} <= {p.name for p in personas}
    assert all(p.source == "built-in" for p in personas)


def test_default_persona_is_general_and_exists() -> None:
    assert DEFAULT_PERSONA == "general"
    assert find_persona(DEFAULT_PERSONA, home=resolve_home()).name == "general"


def test_1_0_names_are_aliases_of_sql_and_project() -> None:
    assert find_persona("SQLAdvisor", home=resolve_home()).name == "sql"
    assert find_persona("ProjectAdvisor", home=resolve_home()).name == "project"
    assert find_persona("sqladvisor", home=resolve_home()).name == "sql"


def test_checkout_home_lists_each_builtin_once_as_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    # Run from a checkout the home is the checkout, so <home>/personas is the built-in folder.
    monkeypatch.setenv("WEPROMPT_HOME", str(builtin_personas_dir().parent))
    personas, _ = list_personas(home=resolve_home())
    names = [p.name for p in personas]
    assert len(names) == len(set(names))
    assert all(p.source == "built-in" for p in personas)
    assert find_persona("sql", home=resolve_home()).source == "built-in"


# -- user files ---------------------------------------------------------------------


def test_user_file_overrides_builtin(weprompt_home: Path) -> None:
    path = write(weprompt_home / "personas", "sql", valid_text("sql"))
    persona = find_persona("sql", home=resolve_home())
    assert persona.source == "user"
    assert persona.path == path
    assert persona.title == "Test Persona"
    personas, errors = list_personas(home=resolve_home())
    assert errors == []
    assert [p.source for p in personas if p.name == "sql"] == ["user"]


def test_user_file_adds_a_persona(weprompt_home: Path) -> None:
    write(weprompt_home / "personas", "tester", valid_text())
    persona = find_persona("tester", home=resolve_home())
    assert persona == dataclasses.replace(persona)  # frozen, comparable
    assert persona.system == "You are a test persona."  # surrounding whitespace stripped
    assert persona.examples == (("Hi", "Hello."),)
    assert persona.stop == ("User:",)
    assert persona.sampling == {
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 10,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "penalty_decay": 0.99,
        "max_tokens": 50,
    }
    assert {"tester", "sql"} <= {p.name for p in list_personas(home=resolve_home())[0]}


def test_sampling_holds_only_the_keys_given(tmp_path: Path) -> None:
    text = valid_text().split("[sampling]")[0] + "[sampling]\ntemperature = 1\n"
    persona = load_persona_file(write(tmp_path, "tester", text))
    assert persona.sampling == {"temperature": 1.0}
    assert isinstance(persona.sampling["temperature"], float)


def test_optional_sections_may_be_left_out(tmp_path: Path) -> None:
    persona = load_persona_file(write(tmp_path, "tester", MINIMAL))
    assert (persona.examples, persona.sampling, persona.stop) == ((), {}, ())


def test_broken_user_file_is_reported_and_the_rest_listed(weprompt_home: Path) -> None:
    broken = write(weprompt_home / "personas", "broken", "name = \n")
    write(weprompt_home / "personas", "tester", valid_text())
    personas, errors = list_personas(home=resolve_home())
    assert {"tester", "sql", "project", "general"} <= {p.name for p in personas}
    assert "broken" not in {p.name for p in personas}
    assert len(errors) == 1 and errors[0].path == str(broken)


def test_broken_user_file_does_not_fall_back_to_the_builtin(weprompt_home: Path) -> None:
    broken = write(weprompt_home / "personas", "sql", valid_text("sql").replace("top_p = 0.9", "top_p = 2"))
    with pytest.raises(InvalidFileError) as info:
        find_persona("sql", home=resolve_home())
    assert info.value.path == str(broken)
    personas, errors = list_personas(home=resolve_home())
    assert "sql" not in {p.name for p in personas}
    assert [e.path for e in errors] == [str(broken)]


def test_hidden_and_non_toml_files_are_ignored(weprompt_home: Path) -> None:
    write(weprompt_home / "personas", ".tmp-x", "garbage = [")
    (weprompt_home / "personas" / "notes.txt").write_text("not a persona")
    _, errors = list_personas(home=resolve_home())
    assert errors == []


def test_unknown_persona_lists_available_names(weprompt_home: Path) -> None:
    write(weprompt_home / "personas", "tester", valid_text())
    with pytest.raises(NotFoundError) as info:
        find_persona("sqll", home=resolve_home())
    message = info.value.message
    assert "'sqll'" in message
    for name in ("general", "project", "sql", "tester"):
        assert name in message
    assert "did you mean 'sql'" in message
    assert info.value.hint and "weprompt personas" in info.value.hint


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("../sql", UnsafeError),
        ("a/b", UnsafeError),
        ("..", UnsafeError),
        (".hidden", UnsafeError),
        ("", UsageError),
        ("has space", UsageError),
        ("semi;colon", UsageError),
        ("x" * 65, UsageError),
    ],
)
def test_invalid_persona_names_are_refused(name: str, error: type[WePromptError]) -> None:
    with pytest.raises(error):
        find_persona(name, home=resolve_home())
    with pytest.raises(error):
        write_persona_template(name, home=resolve_home())


# -- validation errors ----------------------------------------------------------------

# (case id, file text, words the one-line message must contain)
BAD_FILES = [
    (
        "malformed-toml",
        valid_text().replace('title = "Test Persona"', "title = Test Persona"),
        ["malformed TOML", "line 3"],
    ),
    ("unclosed-string", valid_text().replace('title = "Test Persona"', 'title = "Test'), ["malformed TOML", "line 3"]),
    (
        "missing-system",
        valid_text().replace('system = """\nYou are a test persona.\n"""\n', ""),
        ["missing", "'system'"],
    ),
    ("missing-title", valid_text().replace('title = "Test Persona"\n', ""), ["missing", "'title'"]),
    ("missing-name", valid_text().replace('name = "tester"\n', ""), ["missing", "'name'"]),
    ("missing-description", valid_text().replace('description = "A persona for tests."\n', ""), ["'description'"]),
    ("missing-schema", valid_text().replace("schema_version = 1\n", ""), ["missing", "'schema_version'"]),
    ("missing-example-user", valid_text().replace('user = "Hi"\n', ""), ["missing", "'user'", "[[examples]] #1"]),
    ("unknown-top-key", valid_text().replace("stop = ", "colour = 1\nstop = "), ["unknown key 'colour'"]),
    ("typo-top-key", valid_text().replace("system = ", "sytem = "), ["unknown key 'sytem'", "did you mean 'system'"]),
    ("unknown-sampling-key", valid_text().replace("top_k = 10", "temprature = 1.0"), ["'temprature'", "[sampling]"]),
    (
        "unknown-example-key",
        valid_text().replace('assistant = "Hello."', 'answer = "Hello."'),
        ["'answer'", "[[examples]]"],
    ),
    ("name-not-string", valid_text().replace('name = "tester"', "name = 3"), ["'name'", "string", "integer"]),
    ("system-not-string", valid_text().replace('system = """', 'system = ["'), ["malformed TOML"]),
    (
        "system-is-array",
        valid_text().replace('system = """\nYou are a test persona.\n"""', 'system = ["x"]'),
        ["'system'", "string"],
    ),
    ("stop-not-array", valid_text().replace('stop = ["User:"]', 'stop = "User:"'), ["'stop'", "array"]),
    ("stop-item-not-string", valid_text().replace('stop = ["User:"]', "stop = [1]"), ["'stop'", "string"]),
    ("sampling-not-table", MINIMAL + "sampling = 3\n", ["'sampling'", "table"]),
    (
        "temperature-string",
        valid_text().replace("temperature = 0.5", 'temperature = "hot"'),
        ["'temperature'", "number"],
    ),
    ("temperature-bool", valid_text().replace("temperature = 0.5", "temperature = true"), ["'temperature'", "boolean"]),
    ("max-tokens-float", valid_text().replace("max_tokens = 50", "max_tokens = 5.5"), ["'max_tokens'", "whole number"]),
    ("examples-not-tables", MINIMAL + "examples = [1]\n", ["'examples'", "table"]),
    ("example-user-number", valid_text().replace('user = "Hi"', "user = 1"), ["'user'", "[[examples]] #1", "string"]),
    (
        "negative-temperature",
        valid_text().replace("temperature = 0.5", "temperature = -0.1"),
        ["'temperature'", "from 0 to 10"],
    ),
    ("nan-temperature", valid_text().replace("temperature = 0.5", "temperature = nan"), ["'temperature'", "finite"]),
    ("top-p-above-one", valid_text().replace("top_p = 0.9", "top_p = 1.5"), ["'top_p'", "from 0 to 1"]),
    ("temperature-20", valid_text().replace("temperature = 0.5", "temperature = 20"), ["'temperature'", "from 0 to 10"]),
    ("max-tokens-zero", valid_text().replace("max_tokens = 50", "max_tokens = 0"), ["'max_tokens'", "from 1 to"]),
    ("negative-top-k", valid_text().replace("top_k = 10", "top_k = -1"), ["'top_k'"]),
    (
        "penalty-decay-above-one",
        valid_text().replace("penalty_decay = 0.99", "penalty_decay = 1.5"),
        ["'penalty_decay'"],
    ),
    (
        "empty-system",
        valid_text().replace('system = """\nYou are a test persona.\n"""', 'system = "  "'),
        ["'system'", "empty"],
    ),
    ("empty-stop", valid_text().replace('stop = ["User:"]', 'stop = [""]'), ["'stop'", "empty"]),
    ("name-stem-mismatch", valid_text("other"), ["'name'", "'other'", "tester.toml"]),
    ("schema-version-2", valid_text().replace("schema_version = 1", "schema_version = 2"), ["schema_version 2"]),
    ("schema-version-string", valid_text().replace("schema_version = 1", 'schema_version = "1"'), ["'schema_version'"]),
]


@pytest.mark.parametrize(("text", "words"), [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_bad_file_gives_one_line_error_naming_file_and_field(tmp_path: Path, text: str, words: list[str]) -> None:
    path = write(tmp_path, "tester", text)
    with pytest.raises(InvalidFileError) as info:
        load_persona_file(path)
    error = info.value
    line = error.one_line()
    assert "\n" not in line
    assert error.path == str(path) and str(path) in line
    for word in words:
        assert word in error.message, (word, error.message)


def test_not_utf8_file_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "tester.toml"
    path.write_bytes(b'schema_version = 1\nname = "\xff"\n')
    with pytest.raises(InvalidFileError, match="UTF-8"):
        load_persona_file(path)


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_persona_file(tmp_path / "nope.toml")


# -- template -------------------------------------------------------------------------


def test_new_persona_template_loads_as_written(weprompt_home: Path) -> None:
    path = write_persona_template("my-helper", home=resolve_home())
    assert path == weprompt_home / "personas" / "my-helper.toml"
    assert "#" in path.read_text()  # commented for the user
    persona = find_persona("my-helper", home=resolve_home())
    assert persona.source == "user"
    assert persona.title == "My Helper"
    assert persona.sampling == {}


def test_every_commented_line_of_the_template_is_valid_when_uncommented(tmp_path: Path) -> None:
    lines = []
    for line in persona_template("tester").splitlines():
        stripped = line.lstrip("# ")
        # Uncomment the settings and the example, keep the prose comments as they are.
        if line.startswith("# ") and ("=" in stripped and not stripped.startswith("A ") or stripped == "[[examples]]"):
            line = stripped
        lines.append(line)
    persona = load_persona_file(write(tmp_path, "tester", "\n".join(lines) + "\n"))
    assert set(persona.sampling) == {
        "temperature",
        "top_p",
        "top_k",
        "presence_penalty",
        "frequency_penalty",
        "penalty_decay",
        "max_tokens",
    }
    assert len(persona.examples) == 1


def test_new_persona_refuses_to_overwrite_unless_forced(weprompt_home: Path) -> None:
    path = write_persona_template("mine", home=resolve_home())
    path.write_text(valid_text("mine"))
    with pytest.raises(ConflictError):
        write_persona_template("mine", home=resolve_home())
    assert find_persona("mine", home=resolve_home()).title == "Test Persona"
    write_persona_template("mine", force=True, home=resolve_home())
    assert find_persona("mine", home=resolve_home()).title == "Mine"


# -- cache key ------------------------------------------------------------------------


def make_persona(**changes: object) -> Persona:
    base = Persona(
        name="p",
        title="Title",
        description="Desc",
        system="You help.",
        examples=(("Q", "A"),),
        sampling={"temperature": 0.5},
        stop=(),
        source="user",
        path=Path("p.toml"),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_content_hash_changes_with_system_and_examples_only() -> None:
    base = make_persona().content_hash()
    assert len(base) == 64
    assert make_persona(system="You help a lot.").content_hash() != base
    assert make_persona(examples=(("Q", "B"),)).content_hash() != base
    assert make_persona(examples=(("Q", "A"), ("Q2", "A2"))).content_hash() != base
    assert make_persona(examples=()).content_hash() != base
    # Nothing else shapes the state after the persona prefix.
    assert make_persona(title="Other").content_hash() == base
    assert make_persona(description="Other").content_hash() == base
    assert make_persona(sampling={"temperature": 1.0}).content_hash() == base
    assert make_persona(stop=("x",), name="q", source="built-in", path=Path("q.toml")).content_hash() == base


def test_content_hash_follows_edits_of_the_file(weprompt_home: Path) -> None:
    path = write(weprompt_home / "personas", "tester", valid_text())
    first = find_persona("tester", home=resolve_home()).content_hash()
    path.write_text(valid_text().replace('title = "Test Persona"', 'title = "Renamed"'))
    assert find_persona("tester", home=resolve_home()).content_hash() == first
    path.write_text(valid_text().replace("a test persona", "an edited persona"))
    assert find_persona("tester", home=resolve_home()).content_hash() != first


def test_state_key_depends_on_persona_model_and_chat_format(tmp_path: Path) -> None:
    p = make_persona()
    key = persona_state_key(p, model_fingerprint="abc", chat_format="world")
    assert key == persona_state_key(make_persona(title="T2"), model_fingerprint="abc", chat_format="world")
    assert key != persona_state_key(make_persona(system="x"), model_fingerprint="abc", chat_format="world")
    assert key != persona_state_key(p, model_fingerprint="abd", chat_format="world")
    assert key != persona_state_key(p, model_fingerprint="abc", chat_format="raven")
    path = persona_state_path(tmp_path, key)
    assert path.parent.parent == tmp_path and path.name == f"{key}.safetensors"

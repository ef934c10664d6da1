"""`weprompt personas [list|show|new]` driven through the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_main as run

from weprompt_cli.errors import ExitCode
from weprompt_cli.personas import find_persona
from weprompt_cli.paths import resolve_home

VALID = """\
schema_version = 1
name = "{name}"
title = "Tester Title"
description = "Used by the CLI tests."
system = "You are a tester."

[sampling]
temperature = 0.4

[[examples]]
user = "Ping?"
assistant = "Pong."
"""


def assert_one_error_line(err: str, *, contains: list[str]) -> None:
    """stderr holds one `weprompt: error:` line and at most one hint line, no traceback."""
    lines = err.splitlines()
    assert 1 <= len(lines) <= 2, err
    assert lines[0].startswith("weprompt: error: "), err
    if len(lines) == 2:
        assert lines[1].startswith("  hint: "), err
    assert "Traceback" not in err
    for word in contains:
        assert word in lines[0], (word, err)


def write_user_persona(home: Path, name: str, text: str) -> Path:
    folder = home / "personas"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("argv", [["personas"], ["personas", "list"]])
def test_personas_lists_name_title_source_description(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert err == ""
    for word in ("name", "title", "source", "sql", "SQL Advisor", "project", "general", "built-in"):
        assert word in out


def test_personas_list_marks_user_file_that_replaces_a_builtin(
    weprompt_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_user_persona(weprompt_home, "sql", VALID.format(name="sql"))
    write_user_persona(weprompt_home, "mine", VALID.format(name="mine"))
    code, out, _ = run(["personas", "--json"], capsys)
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["sql"]["source"] == "user" and rows["sql"]["title"] == "Tester Title"
    assert rows["mine"]["source"] == "user"
    assert rows["project"]["source"] == "built-in"
    code, out, _ = run(["personas", "list"], capsys)
    assert "replaces built-in" in out


def test_personas_list_warns_about_a_broken_file_and_lists_the_rest(
    weprompt_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = write_user_persona(weprompt_home, "broken", "schema_version = 1\nname = [\n")
    code, out, err = run(["personas"], capsys)
    assert code == 0
    assert "sql" in out and "broken" not in out
    warnings = [line for line in err.splitlines() if line.startswith("weprompt: warning: ")]
    assert len(warnings) == 1 and str(broken) in warnings[0] and "malformed TOML" in warnings[0]
    assert "Traceback" not in err


def test_personas_show_prints_prompt_examples_sampling_and_file(capsys: pytest.CaptureFixture[str]) -> None:
    persona = find_persona("sql", home=resolve_home())
    code, out, err = run(["personas", "show", "sql"], capsys)
    assert code == 0, err
    assert persona.title in out
    assert str(persona.path) in out
    assert "System prompt" in out and "Examples" in out and "Sampling overrides" in out
    assert persona.system.split()[0] in out
    for key in persona.sampling:
        assert key in out


def test_personas_show_json_and_alias(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["personas", "show", "ProjectAdvisor", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["name"] == "project"
    assert data["content_hash"] == find_persona("project", home=resolve_home()).content_hash()


def test_personas_show_does_not_interpret_rich_markup(weprompt_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_user_persona(
        weprompt_home, "markup", VALID.format(name="markup").replace("You are a tester.", "Use [bold]x[/bold].")
    )
    code, out, _ = run(["personas", "show", "markup"], capsys)
    assert code == 0
    assert "Use [bold]x[/bold]." in out


def test_unknown_persona_exits_not_found_listing_names(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["personas", "show", "nosuch"], capsys)
    assert code == ExitCode.NOT_FOUND
    assert_one_error_line(err, contains=["nosuch", "general", "project", "sql"])
    assert "weprompt personas" in err.splitlines()[1]


@pytest.mark.parametrize("name", ["../sql", "a b"])
def test_invalid_persona_name_is_one_line_error(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["personas", "show", name], capsys)
    assert code in (ExitCode.UNSAFE, ExitCode.USAGE)
    assert_one_error_line(err, contains=["invalid persona name"])


BAD = [
    ("malformed", "schema_version = 1\nname = \n", ["malformed TOML", "line 2"]),
    ("missing", VALID.format(name="missing").replace('title = "Tester Title"\n', ""), ["missing", "'title'"]),
    ("unknown", VALID.format(name="unknown").replace("temperature", "temp"), ["unknown key 'temp'", "[sampling]"]),
    ("wrongtype", VALID.format(name="wrongtype").replace('"Pong."', "42"), ["'assistant'", "string"]),
    ("badvalue", VALID.format(name="badvalue").replace("0.4", "-1"), ["'temperature'", "from 0 to 10"]),
    ("mismatch", VALID.format(name="other"), ["'name'", "mismatch.toml"]),
]


@pytest.mark.parametrize(("name", "text", "words"), BAD, ids=[case[0] for case in BAD])
def test_bad_persona_file_exits_invalid_with_one_line_naming_the_file(
    name: str, text: str, words: list[str], weprompt_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_user_persona(weprompt_home, name, text)
    code, out, err = run(["personas", "show", name], capsys)
    assert code == ExitCode.INVALID
    assert out == ""
    assert_one_error_line(err, contains=[str(path), *words])


def test_personas_new_writes_a_template_that_loads(weprompt_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["personas", "new", "helper"], capsys)
    assert code == 0, err
    path = weprompt_home / "personas" / "helper.toml"
    assert str(path) in out
    assert find_persona("helper", home=resolve_home()).path == path
    code, _, _ = run(["personas", "show", "helper"], capsys)
    assert code == 0


def test_personas_new_refuses_to_overwrite_unless_forced(
    weprompt_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_user_persona(weprompt_home, "mine", VALID.format(name="mine"))
    code, _, err = run(["personas", "new", "mine"], capsys)
    assert code == ExitCode.CONFLICT
    assert_one_error_line(err, contains=[str(path), "already exists"])
    assert "--force" in err
    assert find_persona("mine", home=resolve_home()).title == "Tester Title"
    code, _, _ = run(["personas", "new", "mine", "--force"], capsys)
    assert code == 0
    assert find_persona("mine", home=resolve_home()).title == "Mine"


def test_personas_new_over_a_builtin_name_says_it_replaces_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["personas", "new", "sql"], capsys)
    assert code == 0
    assert "replaces the built-in" in err
    assert find_persona("sql", home=resolve_home()).source == "user"


def test_personas_command_does_not_import_torch_and_exits_with_contract_code(weprompt_home: Path) -> None:
    # A real process: the installed entry point, its exit code and its stderr, and no torch.
    write_user_persona(weprompt_home, "broken", "schema_version = 1\nname = \n")
    script = (
        "import sys\n"
        "from weprompt_cli.cli import main\n"
        "argv = sys.argv[1:]\n"
        "try:\n"
        "    main(argv)\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "else:\n"
        "    code = 0\n"
        "loaded = [m for m in ('torch', 'rwkv') if m in sys.modules]\n"
        "sys.stdout.write('\\nHEAVY=' + ','.join(loaded) + '\\n')\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "WEPROMPT_HOME": str(weprompt_home)}
    for argv, expected in ((["personas"], 0), (["personas", "show", "sql"], 0), (["personas", "show", "broken"], 4)):
        proc = subprocess.run(
            [sys.executable, "-c", script, *argv], check=False, capture_output=True, text=True, env=env, timeout=60
        )
        assert proc.returncode == expected, proc.stderr
        assert proc.stdout.rstrip().endswith("HEAVY="), (argv, proc.stdout[-200:])
        assert "Traceback" not in proc.stderr
    assert_one_error_line(proc.stderr, contains=[str(weprompt_home / "personas" / "broken.toml"), "malformed TOML"])

"""G1 as users meet it on the command line: thinking in the REPL, --think/--format, and
state-tuned personas (`state = "file.pth"`, `weprompt personas new NAME --state FILE`).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from checkpoints import build_checkpoint
from g1_model import DIALOGUES, build_g1_model

pexpect = pytest.importorskip("pexpect")

ROOT = Path(__file__).resolve().parent.parent


def env_for(home: Path) -> dict[str, str]:
    env = {**os.environ, "WEPROMPT_HOME": str(home), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    env.pop("WEPROMPT_RAISE_ERRORS", None)
    return env


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "weprompt_cli", *args], env=env_for(home), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)


def spawn(home: Path, *args: str) -> Any:
    return pexpect.spawn(sys.executable, ["-m", "weprompt_cli", *args], env=env_for(home), cwd=str(ROOT),
                         dimensions=(40, 120), encoding="utf-8", codec_errors="replace", timeout=180)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith("  hint:")]
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("weprompt: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def g1_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_g1_model(tmp_path_factory.mktemp("g1") / "rwkv7-g1-tiny.pth")


# ---------------------------------------------------------------------------- thinking in the REPL
def test_the_repl_folds_the_thought_shows_it_on_request_and_resume_shows_the_fold(
    g1_model: Path, weprompt_home: Path
) -> None:
    question, thought, answer = DIALOGUES[1]
    child = spawn(weprompt_home, "chat", "--model", str(g1_model), "-s", "g", "-t", "0", "--think", "on")
    try:
        prompt = "general · g ›"
        child.expect_exact(prompt)
        child.sendline(question)
        child.expect(r"thought for \d+ tokens · /show-thoughts")
        child.expect_exact(answer)
        child.expect(r"tokens · .* tok/s")
        child.expect_exact(prompt)
        child.sendline("/show-thoughts")
        child.expect_exact(thought)
        child.expect_exact(prompt)
        child.sendline("/think off")
        child.expect(r"think off \(saved with this session\)")
        child.sendline("/think maybe")
        child.expect(r"usage: /think off\|on\|bit\|lot")
        child.sendline(f"/export {weprompt_home / 'g thoughts.md'} --thoughts")
        child.expect_exact("wrote 1 turns to")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    [folder] = [p for p in (weprompt_home / "sessions").iterdir() if p.is_dir() and not p.name.startswith(".")]
    [turn] = [json.loads(x) for x in (folder / "transcript.jsonl").read_text().splitlines()]
    assert (turn["reasoning"], turn["assistant"], turn["think"]) == (thought, answer, "on")
    assert json.loads((folder / "session.json").read_text())["extra"]["think"] == "off"
    plain, with_thoughts = cli(weprompt_home, "sessions", "export", "g"), cli(weprompt_home, "sessions", "export", "g", "--thoughts")
    assert plain.returncode == with_thoughts.returncode == 0, plain.stderr + with_thoughts.stderr
    assert answer in plain.stdout and thought not in plain.stdout
    assert "**Thought**" in with_thoughts.stdout and thought.splitlines()[0] in with_thoughts.stdout
    assert with_thoughts.stdout.index("**Thought**") < with_thoughts.stdout.index(answer)
    assert (weprompt_home / "g thoughts.md").read_text() == with_thoughts.stdout  # /export in the REPL: the same document
    child = spawn(weprompt_home, "resume", "g")
    try:
        child.expect(r"thought for \d+ tokens")
        child.expect_exact(answer)
        child.expect_exact("general · g ›")
        assert thought not in child.before
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def test_think_and_format_flags_are_checked(g1_model: Path, weprompt_home: Path) -> None:
    assert "--think" in one_line(cli(weprompt_home, "chat", "--model", str(g1_model), "--think", "lots", "-m", "hi"))
    assert "--format" in one_line(cli(weprompt_home, "chat", "--model", str(g1_model), "--format", "g2", "-m", "hi"))
    world = cli(weprompt_home, "chat", "--model", "demo", "--think", "on", "-m", "hi")
    errors = [ln for ln in world.stderr.splitlines() if ln.startswith("weprompt: error: ")]
    assert world.returncode == 2 and len(errors) == 1 and "thinking format" in errors[0]  # after the demo's note
    assert "Traceback" not in world.stderr and not (weprompt_home / "sessions").exists()
    forced = cli(weprompt_home, "chat", "--model", str(g1_model), "--format", "world", "-t", "0", "-m", DIALOGUES[0][0])
    assert forced.returncode == 0 and "thought for" not in forced.stderr  # no thinking in the World format


def test_a_typed_suffix_thinks_for_one_message_on_the_command_line(g1_model: Path, weprompt_home: Path) -> None:
    question, thought, answer = DIALOGUES[0]
    result = cli(weprompt_home, "chat", "--model", str(g1_model), "-t", "0", "-m", f"{question} (think)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == answer and "thought for" in result.stderr


# ---------------------------------------------------------------------------- state-tuned personas
N_LAYER, N_EMBD, HEAD_SIZE = 2, 64, 32


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint("v7", tmp_path_factory.mktemp("state-model") / "tiny-v7.pth", n_layer=N_LAYER,
                            n_embd=N_EMBD, head_size=HEAD_SIZE)


def state_file(path: Path, n_layer: int = N_LAYER, n_head: int = N_EMBD // HEAD_SIZE, head_size: int = HEAD_SIZE,
               seed: int = 3) -> Path:
    g = torch.Generator().manual_seed(seed)
    torch.save({f"blocks.{i}.att.time_state": torch.randn(n_head, head_size, head_size, generator=g) * 0.5
                for i in range(n_layer)}, str(path))
    return path


def test_a_state_tuned_persona_starts_from_its_state_file(small_model: Path, weprompt_home: Path, tmp_path: Path) -> None:
    from weprompt_cli.chat.formats import WORLD
    from weprompt_cli.chat.persona_state import initial_state, persona_state
    from weprompt_cli.engine import load_engine
    from weprompt_cli.engine.state_file import load_state_file
    from weprompt_cli.paths import Home
    from weprompt_cli.personas import find_persona

    source = state_file(tmp_path / "tuned.pth")
    made = cli(weprompt_home, "personas", "new", "tuned", "--state", str(source))
    assert made.returncode == 0, made.stderr
    assert "2 layers x 2 heads x 32" in made.stderr and (weprompt_home / "states" / "tuned.pth").is_file()
    home = Home(weprompt_home, "test")
    persona = find_persona("tuned", home=home)
    assert persona.state_file == (weprompt_home / "states" / "tuned.pth").resolve() and persona.state_sha256
    engine = load_engine(small_model, "cpu fp32")
    start = initial_state(engine, persona)
    wkv = load_state_file(source, n_layer=N_LAYER, n_head=2, head_size=HEAD_SIZE)
    assert all(torch.equal(start[3 * i + 1], wkv[i]) for i in range(N_LAYER))  # exactly the file's state
    # The persona text is fed on top of it, and the cache key includes the file's hash.
    plain = find_persona("tuned", home=home).__class__(**{**persona.__dict__, "state_file": None, "state_sha256": None})
    tuned_state, _, _ = persona_state(engine, WORLD, persona, home.cache)
    plain_state, _, _ = persona_state(engine, WORLD, plain, home.cache)
    probe = engine.encode("User: hello\n\nAssistant:")
    a = engine.feed(probe, engine.clone_state(tuned_state))
    b = engine.feed(probe, engine.clone_state(plain_state))
    assert float((a - b).abs().max()) > 1e-3  # the first answer starts elsewhere
    # And through the CLI: a chat with the persona works; its first answer differs from the plain persona's.
    with_state = cli(weprompt_home, "chat", "--persona", "tuned", "--model", str(small_model), "-t", "0",
                     "--max-tokens", "8", "-m", "hello")
    assert with_state.returncode == 0, with_state.stderr


def test_a_state_file_for_another_model_is_one_line_naming_both(small_model: Path, weprompt_home: Path,
                                                                tmp_path: Path) -> None:
    big = state_file(tmp_path / "big.pth", n_layer=4, n_head=4, head_size=64)
    assert cli(weprompt_home, "personas", "new", "wrong", "--state", str(big)).returncode == 0
    line = one_line(cli(weprompt_home, "chat", "--persona", "wrong", "--model", str(small_model), "-m", "hi"))
    assert "big.pth" in line and "4 layers x 4 heads x 64" in line and "2 layers x 2 heads x 32" in line


class _Boom:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_state_file_is_refused_and_never_runs(weprompt_home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"blocks.0.att.time_state": _Boom(marker)}, f)
    result = cli(weprompt_home, "personas", "new", "evil", "--state", str(evil))
    assert result.returncode == 5 and "refusing" in one_line(result)
    assert not marker.exists() and not (weprompt_home / "personas" / "evil.toml").exists()


def test_a_persona_naming_a_missing_state_file_is_skipped_with_a_warning(weprompt_home: Path) -> None:
    (weprompt_home / "personas").mkdir(exist_ok=True)
    (weprompt_home / "personas" / "ghost.toml").write_text(
        'schema_version = 1\nname = "ghost"\ntitle = "G"\ndescription = ""\nsystem = "x"\nstate = "nowhere.pth"\n')
    listing = cli(weprompt_home, "personas")
    assert listing.returncode == 0 and "nowhere.pth" in listing.stderr and "not found" in listing.stderr

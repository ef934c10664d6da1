"""`weprompt models show NAME`: what a catalog model is and the decoding it starts from."""

from __future__ import annotations

import json

import pytest

from weprompt_cli.cli import main


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """`weprompt ARGS` through the real entry point in this process: (exit code, stdout, stderr)."""

    def _run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


def test_a_g1_model_shows_the_g1_format_and_its_published_decoding(run_cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run_cli("models", "show", "g1-0.4b", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["chat_format"] == "g1" and data["thinking"] is True
    d = data["decoding"]
    assert (d["temperature"], d["top_p"], d["presence_penalty"], d["frequency_penalty"], d["penalty_decay"]) == (
        1.0, 0.3, 0.5, 0.5, 0.996)
    assert {f["format"] for f in data["files"]} == {"pth", "gguf"}
    code, text, _ = run_cli("models", "show", "g1-0.4b")
    assert "chat format g1" in text and "top_p 0.3" in text and "published decoding" in text


def test_the_demo_model_starts_from_weprompts_defaults(run_cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run_cli("models", "show", "demo", "--json")
    data = json.loads(out)
    assert code == 0 and data["chat_format"] == "world" and data["decoding"]["top_p"] == 0.85
    assert data["decoding_source"] == "WePrompt's defaults" and data["files"][0]["downloaded"] is True


def test_an_unknown_model_is_one_line(run_cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli("models", "show", "g1-1.5")
    assert code == 3 and err.startswith("weprompt: error: no model called 'g1-1.5'") and "g1-1.5b" in err

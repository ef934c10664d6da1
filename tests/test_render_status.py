"""The status line after an answer, the transcript view, and import hygiene of the renderer."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console

from weprompt_cli.render import format_status, render_turns


def test_status_line_shows_tokens_rate_and_first_token_time() -> None:
    assert format_status(42, 2.3, 0.2134, "stop") == "42 tokens · 18.3 tok/s · first token 0.21 s"


def test_status_line_says_why_an_answer_stopped_early() -> None:
    assert format_status(10, 1.0, 0.5, "interrupted") == "10 tokens · 10.0 tok/s · first token 0.50 s · interrupted"
    assert format_status(256, 8.0, 0.3, "length").endswith("· 32.0 tok/s · first token 0.30 s · hit max tokens")


def test_status_line_leaves_out_what_is_unknown_or_meaningless() -> None:
    assert format_status(0, 0.0, None, "interrupted") == "0 tokens · interrupted"
    assert format_status(1, 0.0, None, "stop") == "1 token"
    assert format_status(12_345, 100.0, None, "stop") == "12,345 tokens · 123.5 tok/s"


def test_status_line_passes_an_unknown_stop_reason_through() -> None:
    assert format_status(3, 1.0, None, "stop string") == "3 tokens · 3.0 tok/s · stop string"


def test_the_status_after_an_answer_is_one_dim_line_on_stderr() -> None:
    import types

    from weprompt_cli.render.output import Output
    from weprompt_cli.store import Turn

    out, err = io.StringIO(), io.StringIO()
    output = Output(stdout=out, stderr=err)
    output.err = Console(file=err, force_terminal=True, color_system="standard", highlight=False)
    turn = Turn(1, "q", "a", "p", "r", [1], list(range(42)), "stop", "t0", "t1", tokens_per_s=42 / 2.3, first_token_s=0.21)
    output.reply_status(types.SimpleNamespace(turn=turn, elapsed_s=2.5))  # type: ignore[arg-type]
    assert err.getvalue() == "\x1b[2m42 tokens · 18.3 tok/s · first token 0.21 s\x1b[0m\n"
    assert out.getvalue() == ""


def test_render_turns_shows_user_text_verbatim_and_answers_as_markdown() -> None:
    console = Console(file=io.StringIO(), width=60)
    render_turns(
        console,
        [
            ("list [bold]customers[/bold]", "Use:\n```sql\nSELECT * FROM customers;\n```\n- fast", "stop"),
            ("and orders?", "Join them with **orders**", "interrupted"),
            ("more", "", "length"),
        ],
        first_number=7,
    )
    lines = [line.rstrip() for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]
    assert lines[0] == "#7 You: list [bold]customers[/bold]"  # not read as markup
    assert " SELECT * FROM customers;" in lines
    assert " • fast" in lines
    assert "```sql" not in "\n".join(lines)
    assert "#8 You: and orders?" in lines
    assert "Join them with orders" in lines
    assert lines[lines.index("Join them with orders") + 1] == "(interrupted)"
    assert lines[-2:] == ["#9 You: more", "(hit max tokens)"]


def test_render_turns_of_nothing_prints_nothing() -> None:
    console = Console(file=io.StringIO())
    render_turns(console, [])
    assert console.file.getvalue() == ""  # type: ignore[attr-defined]


def test_renderer_does_not_import_torch() -> None:
    code = (
        "import sys, io\n"
        "from rich.console import Console\n"
        "import weprompt_cli.render as r\n"
        "c = Console(file=io.StringIO(), force_terminal=True)\n"
        "with r.make_stream(c) as s:\n"
        "    s.feed('# hi\\n```py\\nx = 1\\n```\\n')\n"
        "r.render_turns(c, [('q', 'a', 'stop')])\n"
        "print(sorted(m for m in ('torch', 'rwkv', 'numpy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

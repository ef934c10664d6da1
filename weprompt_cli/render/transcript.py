"""Past turns rendered for the screen: the last few on resume, and ``/history``."""

from __future__ import annotations

from rich.console import Console
from rich.markdown import Markdown
from rich.text import Text

from weprompt_cli.render.paragraphs import with_paragraph_breaks
from weprompt_cli.render.safe import printable
from weprompt_cli.render.status import STOP_NOTES
from weprompt_cli.render.stream import DEFAULT_CODE_THEME


def render_turns(
    console: Console,
    turns: list[tuple[str, str, str]],
    *,
    first_number: int | None = None,
    user_label: str = "You",
    code_theme: str = DEFAULT_CODE_THEME,
) -> None:
    """Print turns of ``(user text, assistant Markdown, stop_reason)``, oldest first.

    User text is shown as typed (never read as markup); the answer as Markdown, as it
    looked when it streamed; a turn that did not stop normally says why. With
    ``first_number``, each turn is labelled with its number in the session.
    """
    for index, (user, assistant, stop_reason) in enumerate(turns):
        if index:
            console.line()
        label = user_label if first_number is None else f"#{first_number + index} {user_label}"
        console.print(Text.assemble((f"{label}: ", "bold"), printable(user)), highlight=False)
        if assistant.strip():
            console.print(Markdown(with_paragraph_breaks(printable(assistant)), code_theme=code_theme))
        note = STOP_NOTES.get(stop_reason, stop_reason)
        if note:
            console.print(Text(f"({note})", style="dim"))

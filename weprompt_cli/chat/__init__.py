"""One conversation: the prompt format of the model family, and turns (prefill, generate, checkpoint)."""

from weprompt_cli.chat.formats import RAVEN, SEPARATOR, WORLD, ChatFormat, fold, get_format

__all__ = ["RAVEN", "SEPARATOR", "WORLD", "ChatFormat", "fold", "get_format"]

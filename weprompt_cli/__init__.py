"""WePrompt: a terminal chat for local RWKV language models."""

__version__ = "2.0.0.dev0"

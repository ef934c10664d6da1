"""Questions to the general persona: what WePrompt is and how to use it, each answered with the command
that does it, and requests for another persona's job answered with the way to start that persona.

Questions are composed from an opener ("How do I", "Is there a way to", ...) and a task phrased
several ways, so the model learns the task, not the sentence; each topic keeps whole held-out
sentences that no composition produces.
"""

from __future__ import annotations

import random

from training.projects import project_qa
from training.smalltalk import fold
from training.sqlgen import sql_item

OPENERS = ["How do I", "How can I", "How would I", "What's the command to", "Is there a way to", "Can I",
           "Tell me how to", "Show me how to", "I want to", "I'd like to", "Help me", "What do I type to",
           "Explain how to", "Where do I go to"]
QUESTION_OPENERS = ("How", "What's", "Is", "Can", "Where", "What")

# (tasks: verb phrases that follow an opener, whole training questions, held-out sentences, answers)
TOPICS: list[tuple[list[str], list[str], list[str], list[str]]] = [
    ([],
     ["What is WePrompt?", "What does this app do?", "Tell me about WePrompt.", "What is this program?",
      "What is this app for?", "Explain WePrompt.", "What's WePrompt?", "What is this tool?", "What am I using?",
      "What does WePrompt do?", "Why would I use WePrompt?", "Is WePrompt a chat app?"],
     ["Can you describe WePrompt in a sentence?"],
     ["WePrompt is a terminal chat app for local RWKV language models. It keeps every session on disk, so you can "
      "resume a chat instantly with weprompt resume."]),
    (["load a real model", "use a bigger model", "download a model", "get a better model", "use my own model file",
      "get more models", "install a model", "use a larger RWKV model", "load my checkpoint", "switch to a real model",
      "use a different model", "get a smarter model", "add a model"],
     ["Where can I get more models?", "I have a checkpoint, how do I load it?", "Are there bigger models?",
      "This model is too small, what now?", "Which models can I use?"],
     ["Where do I get a proper model from?"],
     ["Run weprompt models pull NAME to download an RWKV model, or start WePrompt with --model PATH to load a "
      "checkpoint you already have."]),
    (["change persona", "talk to the SQL persona", "pick a persona", "switch persona", "use the project persona",
      "start the SQL advisor", "see the personas", "list the personas", "get help with projects",
      "choose another assistant"],
     ["Which personas are there?", "What personas can I use?", "Is there a persona for project plans?",
      "List the personas.", "What is a persona?", "Are there other assistants?", "Is there a SQL helper?"],
     ["How do I pick a different persona?"],
     ["There are three personas: sql (weprompt chat --persona sql), project (weprompt chat --persona project) and "
      "general, this one."]),
    (["continue an old chat", "resume a session", "see my sessions", "list my sessions", "reopen a chat",
      "pick up where I left off", "get back to my last conversation", "carry on with yesterday's chat",
      "find my old conversations", "see my past chats", "continue a previous session", "open a saved chat"],
     ["Where are my old conversations?", "Are my chats saved?", "Do you remember our last chat?",
      "Where did my last session go?"],
     ["Can I go back to a previous conversation?"],
     ["Run weprompt list-sessions to see your sessions and weprompt resume NAME to continue one."]),
    (["export a chat", "save a conversation to a file", "share a session", "get my chat as Markdown",
      "download a transcript", "export a session as JSON", "copy a chat to a file"],
     ["Can I export chats?", "Is there an export?"],
     ["Can I keep a copy of this conversation in a file?"],
     ["Run weprompt sessions export NAME to write a session as Markdown, or add --format json for JSON."]),
    (["delete a session", "remove an old chat", "clean up my sessions", "get rid of a conversation",
      "erase a chat", "rename a session"],
     ["Can I delete chats?", "Too many sessions, how do I tidy up?"],
     ["Is it possible to throw away a session I no longer need?"],
     ["Run weprompt sessions delete NAME to delete a session, or weprompt sessions rename OLD NEW to rename it."]),
    (["check my setup", "see if my GPU works", "find out what is installed", "check that everything works",
      "check for CUDA", "debug my install"],
     ["Does WePrompt see my GPU?", "Is my install OK?"],
     ["Why is my graphics card not used?"],
     ["Run weprompt doctor: it checks Python, torch, rwkv, CUDA and your GPUs and says what to fix."]),
    (["run WePrompt as a server", "use WePrompt over HTTP", "start an API", "call the model from my code",
      "serve the model", "use the OpenAI API with WePrompt"],
     ["Is there an HTTP API?", "Does WePrompt have an API?"],
     ["Can other programs talk to the model?"],
     ["Run weprompt serve: it serves /generate-response and /v1/chat/completions on 127.0.0.1."]),
    (["leave the chat", "quit", "exit WePrompt", "stop chatting", "see the chat commands", "get help in the chat"],
     ["What commands are there?", "How do I get out of here?"],
     ["What are the slash commands?"],
     ["Type /help in the chat for the commands and /quit to leave; every turn is already saved."]),
]

SQL_POINTER = ("For SQL questions start the SQL persona: weprompt chat --persona sql. It writes queries for the demo "
               "shop database.")
PROJECT_POINTER = ("For project plans start the project persona: weprompt chat --persona project. It suggests folders, "
                   "steps and tools.")
CROSS_WORDS = {"sql": ["Can you help me with SQL?", "Write a SQL query for me.", "I have a database question.",
                       "Help me with a query.", "Can you write SQL?"],
               "project": ["Help me plan a website.", "How should I structure my project?", "Can you plan an app?",
                           "I need a project plan.", "I want to build a mobile app."]}


def _punctuate(question: str) -> str:
    return question + ("?" if question.startswith(QUESTION_OPENERS) else ".")


def _table(tasks: list[str], whole: list[str], heldout: list[str]) -> dict[str, list[str]]:
    composed = [_punctuate(f"{o} {t}") for o in OPENERS for t in tasks] + whole
    held = {fold(q) for q in heldout}
    return {"train": sorted({q for q in composed if fold(q) not in held}), "heldout": heldout}


GENERAL: list[tuple[dict[str, list[str]], list[str]]] = [
    (_table(tasks, whole, heldout), answers) for tasks, whole, heldout, answers in TOPICS]


def cross_question(rng: random.Random, split: str) -> tuple[str, str]:
    """A question for another persona (any generated SQL question or app idea), answered with the way there."""
    target = rng.choice(["sql", "project"])
    if rng.random() < 0.3:
        return rng.choice(CROSS_WORDS[target]), SQL_POINTER if target == "sql" else PROJECT_POINTER
    if target == "sql":
        return sql_item(rng, split).question, SQL_POINTER
    return project_qa(rng, split)[0], PROJECT_POINTER


def general_qa(rng: random.Random, split: str) -> tuple[str, str]:
    """A question to the general persona and its answer: a quarter are another persona's job."""
    if rng.random() < 0.25:
        return cross_question(rng, split)
    frames, answers = rng.choice(GENERAL)
    q = rng.choice(frames[split])
    if split == "train" and rng.random() < 0.2:  # typed loosely
        q = q.lower() if rng.random() < 0.5 else q.rstrip("?.")
    return q, rng.choice(answers)

"""Deterministic, seeded generator of chat transcripts in WePrompt's chat format.

A document is the real persona prefix (read from `personas/*.toml`) followed by a few turns:

    System: {system}\\n\\n  User: {q}\\n\\nAssistant: {a}\\n\\n (examples)  then per turn the same.

It is produced as segments exactly as the app feeds them (the prefix, each `User: ...\\n\\nAssistant:`
prompt, each ` answer\\n\\n` reply), so tokenizing segment by segment matches inference.
Run `python -m training.corpus --show 5` to print a few documents.
"""

from __future__ import annotations

import argparse
import random
import re
from dataclasses import dataclass
from pathlib import Path

import tomllib

from training.sqlgen import render_answer, sql_item

ROOT = Path(__file__).resolve().parent.parent
PERSONA_DIR = ROOT / "personas"
PERSONAS = ("sql", "project", "general")
PERSONA_WEIGHTS = (0.76, 0.12, 0.12)


def fold(text: str) -> str:
    """The app's folding: CRLF to LF, runs of blank lines to one newline, stripped."""
    text = text.replace("\r\n", "\n")
    return re.sub(r"\n(?:[ \t]*\n)+", "\n", text).strip()


def persona_prefix(name: str, persona_dir: Path = PERSONA_DIR) -> str:
    """`System: ...\\n\\n` plus the example exchanges of a persona file, as the app feeds it."""
    with open(persona_dir / f"{name}.toml", "rb") as f:
        data = tomllib.load(f)
    out = f"System: {fold(data['system'])}\n\n"
    for ex in data.get("examples", []):
        out += f"User: {fold(ex['user'])}\n\nAssistant: {fold(ex['assistant'])}\n\n"
    return out


@dataclass(frozen=True)
class Segment:
    text: str
    is_reply: bool  # assistant text (the part the loss is taken on)


# ---- off-topic ------------------------------------------------------------------------------------------
OFF_TOPIC = {
    "train": ["What is the capital of France?", "Write a poem about the sea.", "Who won the football match yesterday?",
              "What should I cook for dinner?", "Tell me a joke.", "What's the weather like today?",
              "Translate good morning into Spanish.", "How tall is Mount Everest?", "Recommend a good movie.",
              "What is the meaning of life?", "Can you help me with my homework on history?",
              "Who was the first person on the moon?", "Write me a love letter.", "What time is it in Tokyo?",
              "Give me a recipe for pancakes.", "Which car should I buy?", "Sing me a song."],
    "heldout": ["What is the best pizza topping in your opinion?", "Summarise the news for me.",
                "How do I fix a flat bicycle tyre?", "Tell me a story about a dragon."],
}
REDIRECT = {
    "sql": ["I can only help with SQL for the shop database. Ask me about customers, orders, products, order items "
            "or employees.",
            "That is outside what I do: I write and explain SQL for the shop database. Try a question about "
            "customers, orders, products or employees."],
    "project": ["I only plan software projects. Tell me what app you want to build and I will suggest folders, "
                "steps and tools.",
                "That is not something I can help with: I plan software projects. Describe an app and I will "
                "outline folders, steps and tools."],
    "general": ["I am only a small demo model, so I cannot answer that well. For real answers load a real model: "
                "run weprompt models pull NAME, or start WePrompt with --model PATH."],
}
CROSS_TOPIC = {  # questions for the other persona
    "sql": ["Plan a todo app in Python.", "How should I structure a web scraper project?",
            "What folders does a REST API project need?"],
    "project": ["How many customers are from Paris?", "Write a SQL query that lists all products.",
                "What is a primary key?"],
}


# ---- project persona --------------------------------------------------------------------------------------
LANGS = {
    "Python": {"src": "src/", "test": "pytest", "pkg": "pyproject.toml", "lint": "ruff"},
    "JavaScript": {"src": "src/", "test": "Jest", "pkg": "package.json", "lint": "ESLint"},
    "Go": {"src": "cmd/ and internal/", "test": "go test", "pkg": "go.mod", "lint": "golangci-lint"},
    "Rust": {"src": "src/", "test": "cargo test", "pkg": "Cargo.toml", "lint": "clippy"},
}
APPS = [  # (phrases, extra folders, steps, framework per language)
    (["a command line todo app", "a todo list CLI", "a terminal task manager"], "data/",
     ["Define the task model and a JSON file store.", "Add the commands add, list and done.",
      "Write tests for each command.", "Package it with {pkg} and write a README."],
     {"Python": "Typer", "JavaScript": "Commander", "Go": "Cobra", "Rust": "clap"}),
    (["a blog website", "a personal blog", "a simple blog site"], "templates/ and static/",
     ["Design the post model and the database tables.", "Build pages to list, read and write posts.",
      "Add login for the author.", "Write tests, then deploy to a small server."],
     {"Python": "Django", "JavaScript": "Next.js", "Go": "Gin with html/template", "Rust": "Axum with Askama"}),
    (["a REST API", "a JSON web API", "a backend API for a shop"], "migrations/",
     ["Write down the resources and endpoints.", "Create the database schema and migrations.",
      "Implement the endpoints with validation.", "Add tests and an OpenAPI description."],
     {"Python": "FastAPI and SQLAlchemy", "JavaScript": "Express and Prisma", "Go": "chi and sqlc",
      "Rust": "Axum and sqlx"}),
    (["a chat bot", "a Discord bot", "a support chat bot"], "config/",
     ["Register the bot and keep the token in an environment variable.", "Handle incoming messages and commands.",
      "Store conversation data in SQLite.", "Add tests and run it as a service."],
     {"Python": "discord.py", "JavaScript": "discord.js", "Go": "discordgo", "Rust": "serenity"}),
    (["a web scraper", "a price tracker that scrapes shops", "a news scraper"], "data/ and logs/",
     ["Pick the pages and fields to collect.", "Fetch pages politely with retries and a delay.",
      "Parse the fields and save them to CSV or SQLite.", "Schedule runs and test the parser on saved pages."],
     {"Python": "httpx and BeautifulSoup", "JavaScript": "Playwright", "Go": "Colly", "Rust": "reqwest and scraper"}),
    (["a data dashboard", "a sales dashboard", "an analytics dashboard"], "data/ and notebooks/",
     ["Load and clean the data.", "Compute the key numbers.", "Draw the charts and filters.",
      "Deploy it and refresh the data on a schedule."],
     {"Python": "pandas and Streamlit", "JavaScript": "React and Chart.js", "Go": "Go templates and Chart.js",
      "Rust": "Polars and a small web server"}),
    (["a 2D game", "a small platform game", "a snake game"], "assets/",
     ["Set up the game loop and window.", "Add the player, controls and collisions.",
      "Add levels, score and sounds.", "Test on each platform and package a release."],
     {"Python": "pygame", "JavaScript": "Phaser", "Go": "Ebitengine", "Rust": "Bevy"}),
    (["a URL shortener", "a link shortening service"], "migrations/",
     ["Design a table of codes and target URLs.", "Add an endpoint that creates short codes.",
      "Redirect visitors and count clicks.", "Add rate limits, tests and deployment."],
     {"Python": "Flask and SQLite", "JavaScript": "Express and Redis", "Go": "net/http and SQLite",
      "Rust": "Axum and SQLite"}),
    (["a notes app", "a markdown notes app", "a note taking app"], "notes/",
     ["Define the note format and storage.", "Build create, edit, search and delete.",
      "Add tags and export.", "Write tests and publish a first release."],
     {"Python": "Textual", "JavaScript": "Electron", "Go": "Bubble Tea", "Rust": "Tauri"}),
]
PROJECT_FRAMES = {
    "train": ["Plan {app} in {lang}.", "How should I structure {app} written in {lang}?",
              "I want to build {app} with {lang}. Where do I start?", "Give me a project plan for {app} using {lang}.",
              "What folders and steps do I need for {app} in {lang}?", "Help me organise a new {app} project in {lang}.",
              "I am starting {app} in {lang}. What is the plan?"],
    "heldout": ["Outline the steps to make {app} in {lang}.", "Suggest a layout for {app} project using {lang}."],
}


def project_qa(rng: random.Random, split: str) -> tuple[str, str]:
    """A project-planning question and its plan."""
    phrases, folders, steps, fw = rng.choice(APPS)
    lang = rng.choice(list(LANGS))
    tools = LANGS[lang]
    q = rng.choice(PROJECT_FRAMES[split]).format(app=rng.choice(phrases), lang=lang)
    steps_t = " ".join(f"{i}. {s.format(**tools)}" for i, s in enumerate(steps, 1))
    a = (f"Folders: {tools['src']}, tests/, {folders}, docs/.\nSteps: {steps_t}\n"
         f"Tools: {lang}, {fw[lang]}, {tools['test']}, {tools['lint']}.")
    return q, a


# ---- general persona ---------------------------------------------------------------------------------------
GENERAL = [
    ({"train": ["Hello!", "Hi", "Hi there!", "Good morning!", "Hey, how are you?"], "heldout": ["Hello, anyone there?"]},
     ["Hello! I am the WePrompt demo model. How can I help you today?",
      "Hi! I am a small demo model inside WePrompt. Ask me about WePrompt or how to load a real model."]),
    ({"train": ["What is WePrompt?", "What does this app do?", "Tell me about WePrompt.", "What is this program?"],
      "heldout": ["Can you describe WePrompt in a sentence?"]},
     ["WePrompt is a terminal chat app for local RWKV language models. It keeps every session on disk, so you can "
      "resume a chat instantly with weprompt resume."]),
    ({"train": ["How do I load a real model?", "How do I use a bigger model?", "How can I download a model?",
                "How do I get a better model?", "Can I use my own model file?"],
      "heldout": ["Where do I get a proper model from?"]},
     ["Run weprompt models pull NAME to download an RWKV model, or start WePrompt with --model PATH to load a "
      "checkpoint you already have."]),
    ({"train": ["Who are you?", "Are you a real AI?", "What model are you?", "How smart are you?"],
      "heldout": ["What kind of model am I talking to?"]},
     ["I am the small demo model that ships with WePrompt. I only know a few topics; load a real model with "
      "weprompt models pull NAME or --model PATH for real answers."]),
    ({"train": ["What can you do?", "What can I ask you?", "Which personas are there?"],
      "heldout": ["What are you good at?"]},
     ["I can explain WePrompt. For SQL help try weprompt chat --persona sql, and for project plans try "
      "weprompt chat --persona project."]),
    ({"train": ["How do I continue an old chat?", "How do I resume a session?", "How do I see my sessions?"],
      "heldout": ["Can I go back to a previous conversation?"]},
     ["Run weprompt list-sessions to see your sessions and weprompt resume NAME to continue one."]),
    ({"train": ["Thanks!", "Thank you.", "Bye!", "Goodbye."], "heldout": ["Thanks a lot, see you."]},
     ["You are welcome! Goodbye for now.", "Glad to help. Bye!"]),
]


def general_qa(rng: random.Random, split: str) -> tuple[str, str]:
    """A question to the general persona and its answer."""
    frames, answers = rng.choice(GENERAL)
    return rng.choice(frames[split]), rng.choice(answers)


# ---- documents -------------------------------------------------------------------------------------------
def turn(rng: random.Random, persona: str, split: str) -> tuple[str, str]:
    """One (question, answer) for a persona; about 8% are off-topic questions answered with a redirect."""
    x = rng.random()
    if x < 0.06 or (persona == "general" and x < 0.15):
        return rng.choice(OFF_TOPIC[split]), rng.choice(REDIRECT[persona])
    if x < 0.08 and persona in CROSS_TOPIC:
        return rng.choice(CROSS_TOPIC[persona]), rng.choice(REDIRECT[persona])
    if persona == "sql":
        item = sql_item(rng, split)
        return item.question, render_answer(item)
    if persona == "project":
        return project_qa(rng, split)
    return general_qa(rng, split)


def document(rng: random.Random, prefixes: dict[str, str], split: str = "train") -> list[Segment]:
    """A persona prefix and 1-4 turns, as the segments the app would feed."""
    persona = rng.choices(PERSONAS, weights=PERSONA_WEIGHTS)[0]
    segs = [Segment(prefixes[persona], False)]
    for _ in range(rng.choice([1, 2, 2, 3, 3, 4])):
        q, a = turn(rng, persona, split)
        segs.append(Segment(f"User: {fold(q)}\n\nAssistant:", False))
        segs.append(Segment(f" {fold(a)}\n\n", True))
    return segs


def documents(n: int, seed: int, split: str = "train") -> list[list[Segment]]:
    """n documents from one seed (same seed, same documents)."""
    rng = random.Random(seed)
    prefixes = {p: persona_prefix(p) for p in PERSONAS}
    return [document(rng, prefixes, split) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--show", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="train", choices=["train", "heldout"])
    args = ap.parse_args()
    for doc in documents(args.show, args.seed, args.split):
        print("".join(s.text for s in doc) + "=" * 40)


if __name__ == "__main__":
    main()

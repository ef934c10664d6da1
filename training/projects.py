"""Questions to the project persona and their plans: the nine worked app types, and any app described
as "a <kind> that <does something with things>", with or without a language.

A plan is always three lines, `Folders: ...`, `Steps: 1. ... 2. ...`, `Tools: ...`, and names the
language asked for (a default per kind of app when none is named).
"""

from __future__ import annotations

import random

from training import values as V
from training.sqlbase import _frames

LANGS = {
    "Python": {"src": "src/", "test": "pytest", "pkg": "pyproject.toml", "lint": "ruff"},
    "JavaScript": {"src": "src/", "test": "Jest", "pkg": "package.json", "lint": "ESLint"},
    "Go": {"src": "cmd/ and internal/", "test": "go test", "pkg": "go.mod", "lint": "golangci-lint"},
    "Rust": {"src": "src/", "test": "cargo test", "pkg": "Cargo.toml", "lint": "clippy"},
}
LANG_WORDS = {"Python": ["Python", "python"], "JavaScript": ["JavaScript", "javascript", "JS", "Node.js"],
              "Go": ["Go", "go", "Golang"], "Rust": ["Rust", "rust"]}
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

# Any app: a kind of program and what it is about. (names, default language, folders, steps, framework per language)
KINDS: dict[str, tuple[list[str], str, str, list[str], dict[str, str]]] = {
    "mobile": (["mobile app", "phone app", "app for my phone", "Android app", "iPhone app"], "JavaScript",
               "app/ (screens and components), assets/",
               ["Sketch the screens and what each shows about the {pl}.", "Set up the project and the navigation.",
                "Store the {pl} on the device and add sync later.", "Test on a real phone and publish to the app stores."],
               {"Python": "Kivy", "JavaScript": "React Native", "Go": "gomobile", "Rust": "Tauri mobile"}),
    "web": (["website", "web app", "site", "web page"], "Python", "templates/ and static/",
            ["Design the data model for the {pl}.", "Build the pages to list, add and edit {pl}.",
             "Add accounts and login.", "Write tests and deploy to a small server."],
            {"Python": "Django", "JavaScript": "Next.js", "Go": "Gin with html/template", "Rust": "Axum with Askama"}),
    "cli": (["command line tool", "CLI", "terminal tool", "script"], "Python", "data/",
            ["Decide the commands and options for the {pl}.", "Read and write the {pl} in a local file.",
             "Add clear errors and --help text.", "Write tests and package it with {pkg}."],
            {"Python": "Typer", "JavaScript": "Commander", "Go": "Cobra", "Rust": "clap"}),
    "service": (["backend", "service", "API", "server", "microservice"], "Go", "migrations/ and config/",
                ["Write down the endpoints for the {pl}.", "Create the database schema and migrations.",
                 "Implement the endpoints with validation and logging.", "Add tests, a Dockerfile and deployment."],
                {"Python": "FastAPI and SQLAlchemy", "JavaScript": "Express and Prisma", "Go": "chi and sqlc",
                 "Rust": "Axum and sqlx"}),
    "bot": (["bot", "chat bot", "Telegram bot", "Slack bot", "Discord bot"], "Python", "config/",
            ["Register the bot and keep its token in an environment variable.", "Handle the commands about {pl}.",
             "Store the {pl} in SQLite.", "Add tests and run it as a service."],
            {"Python": "python-telegram-bot", "JavaScript": "discord.js", "Go": "telebot", "Rust": "teloxide"}),
    "desktop": (["desktop app", "desktop program", "app for my laptop"], "Python", "ui/ and data/",
                ["Sketch the main window for the {pl}.", "Build the views to add, edit and search {pl}.",
                 "Save the {pl} to a local database.", "Test it and build installers."],
                {"Python": "PySide6", "JavaScript": "Electron", "Go": "Fyne", "Rust": "Tauri"}),
    "game": (["game", "browser game", "small game"], "JavaScript", "assets/",
             ["Set up the game loop and the window.", "Add the player, controls and the {pl}.",
              "Add levels, score and sounds.", "Test on each platform and package a release."],
             {"Python": "pygame", "JavaScript": "Phaser", "Go": "Ebitengine", "Rust": "Bevy"}),
}
THINGS = [("workouts", "workout"), ("runs", "running"), ("recipes", "cooking"), ("habits", "habit"), ("expenses", "expense"),
          ("books", "reading"), ("plants", "plant"), ("flashcards", "flashcard"), ("bookings", "booking"),
          ("products", "inventory"), ("tickets", "ticket"), ("photos", "photo"), ("passwords", "password"),
          ("notes", "note"), ("movies", "movie"), ("reminders", "reminder"), ("events", "event"), ("meals", "meal"),
          ("job applications", "job"), ("study sessions", "study"), ("invoices", "invoice"), ("songs", "music"),
          ("trips", "travel"), ("bills", "bill"), ("tasks", "task"), ("contacts", "contact"), ("quotes", "quote"),
          ("chess games", "chess"), ("weather readings", "weather"), ("bird sightings", "birdwatching")]
DOES = ["that tracks my {pl}", "to log my {pl}", "for my {pl}", "that manages {pl}", "to keep track of {pl}",
        "for sharing {pl}", "that reminds me about {pl}", "to organise {pl}"]
PROJECT_FRAMES = _frames(
    ["I want to build", "I'd like to make", "Help me plan", "Plan", "How should I structure", "How would you organise",
     "Give me a plan for", "Outline", "Let's build", "I'm starting", "Where do I start with", "Make a plan for",
     "Steps to build", "Can you plan", "I need", "What's the plan for", "Walk me through building"],
    ["{app}.", "{app} in {lang}.", "{app} using {lang}.", "{app} written in {lang}.", "{app} with {lang}."],
    ["Plan {app} in {lang}.", "How should I structure {app} written in {lang}?",
     "I want to build {app} with {lang}. Where do I start?", "Give me a project plan for {app} using {lang}.",
     "What folders and steps do I need for {app} in {lang}?", "Help me organise a new {app} project in {lang}.",
     "I am starting {app} in {lang}. What is the plan?", "I want to build {app}. Where do I start?",
     "What folders and steps do I need for {app}?", "{app} in {lang}: how do I set it up?"],
    ["Outline the steps to make {app} in {lang}.", "Suggest a layout for {app} project using {lang}.",
     "What would a sensible structure for {app} look like?"],
)


def _app(rng: random.Random) -> tuple[str, str, str, list[str], dict[str, str], str]:
    """(description, default language, folders, steps, frameworks, the things' plural) of some app."""
    if rng.random() < 0.35:
        phrases, folders, steps, fw = rng.choice(APPS)
        return rng.choice(phrases), "Python", folders, steps, fw, ""
    names, default, folders, steps, fw = KINDS[rng.choice(list(KINDS))]
    pl, mod = rng.choice(THINGS) if rng.random() < 0.85 else (V.word(rng) + "s", V.word(rng))
    name = rng.choice(names)
    if rng.random() < 0.5:
        desc = f"{mod} {name}"
        desc = ("an " if desc[0] in "aeiouAEIOU" else "a ") + desc
    else:
        desc = ("an " if name[0] in "aeiouAEIOU" else "a ") + f"{name} {rng.choice(DOES).format(pl=pl)}"
    return desc, default, folders, steps, fw, pl


def project_qa(rng: random.Random, split: str) -> tuple[str, str]:
    """A project-planning question and its plan."""
    app, default, folders, steps, fw, pl = _app(rng)
    frame = rng.choice(PROJECT_FRAMES[split])
    lang = rng.choice(list(LANGS)) if "{lang}" in frame else default
    q = frame.format(app=app, lang=rng.choice(LANG_WORDS[lang]))
    q = q[0].upper() + q[1:]
    tools = LANGS[lang]
    steps_t = " ".join(f"{i}. {s.format(pl=pl or 'data', **tools)}" for i, s in enumerate(steps, 1))
    a = (f"Folders: {tools['src']}, tests/, {folders}, docs/.\nSteps: {steps_t}\n"
         f"Tools: {lang}, {fw[lang]}, {tools['test']}, {tools['lint']}.")
    return q, a

"""A GGUF model is a first-class model: chat, resume after kill -9, undo, fork, the persona cache,
`weprompt serve`, and one clear line for every bad input, through the llama.cpp backend.

The tiny RWKV-7 (2 x 128, head size 64, the tiny BPE tokenizer) is converted with
`weprompt models convert --to gguf` as a user would; greedy answers from the GGUF are
compared with the same `.pth` on the rwkv package.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from checkpoints import tiny_model
from gguf_models import needs_llama_cpp

pytestmark = needs_llama_cpp
pexpect = pytest.importorskip("pexpect")

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["How do I select every row of a table?", "And count them per customer?", "What is a primary key?"]


def env_for(home: Path) -> dict[str, str]:
    env = {**os.environ, "WEPROMPT_HOME": str(home), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    env.pop("WEPROMPT_RAISE_ERRORS", None)
    return env


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "weprompt_cli", *args], env=env_for(home), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="module")
def pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model("v7", tmp_path_factory.getbasetemp() / "tiny-models")


@pytest.fixture(scope="module")
def ggufs(pth: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny model as F32, F16 and Q8_0 GGUFs, written by `weprompt models convert`."""
    home = tmp_path_factory.mktemp("convert-home")
    out = {}
    for quant in ("f32", "f16", "q8_0"):
        target = tmp_path_factory.getbasetemp() / "ggufs" / f"tiny-{quant}.gguf"
        target.parent.mkdir(parents=True, exist_ok=True)
        done = cli(home, "models", "convert", str(pth), "--to", "gguf", "--quant", quant, "-o", str(target))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(target.resolve())
        assert (target.parent / "tiny-{}.tokenizer.json".format(quant)).is_file()  # the tokenizer travels with it
        out[quant] = target
    return out


def stored(home: Path, name: str) -> list[dict[str, Any]]:
    for folder in (home / "sessions").iterdir():
        meta = folder / "session.json"
        if meta.is_file() and json.loads(meta.read_text())["name"] == name:
            return [json.loads(line) for line in (folder / "transcript.jsonl").read_text().splitlines()]
    raise AssertionError(f"no session {name}")


# ---------------------------------------------------------------------------- same answers as the .pth
def test_greedy_turns_on_f32_gguf_equal_the_pth_and_so_does_the_state(pth: Path, ggufs: dict[str, Path]) -> None:
    from weprompt_cli.chat.formats import WORLD
    from weprompt_cli.chat.turn import TurnStream
    from weprompt_cli.engine import load_engine
    from weprompt_cli.params import SamplingParams

    greedy = SamplingParams(temperature=0, max_tokens=24)
    runs = {}
    for label, path in (("pth", pth), ("gguf", ggufs["f32"])):
        engine = load_engine(path, "auto")
        state = engine.zero_state()
        turns = []
        for i, question in enumerate(QUESTIONS, start=1):
            prompt = WORLD.turn_prompt(question, needs_boundary=bool(turns) and turns[-1].stop_reason != "stop")
            stream = TurnStream(engine, state, index=i, user=question, prompt_text=prompt,
                                prompt_tokens=engine.encode(prompt), params=greedy, stops=WORLD.stop)
            stream.text()
            turns.append(stream.turn)
        probe = engine.feed(engine.encode(" probe"), engine.clone_state(state))  # what the state after 3 turns says
        runs[label] = (turns, probe, engine)
    (pth_turns, pth_probe, _), (gguf_turns, gguf_probe, gguf_engine) = runs["pth"], runs["gguf"]
    assert [t.reply_tokens for t in gguf_turns] == [t.reply_tokens for t in pth_turns]
    assert [t.assistant for t in gguf_turns] == [t.assistant for t in pth_turns]
    assert float(abs(gguf_probe - pth_probe.numpy()).max()) < 1e-3  # llama.cpp logits are numpy
    assert gguf_engine.backend == "llama.cpp" and gguf_engine.info.quantization == "F32"


def test_q8_0_gguf_answers_closely(pth: Path, ggufs: dict[str, Path]) -> None:
    from weprompt_cli.engine import load_engine

    ref = load_engine(pth, "cpu fp32")
    q8 = load_engine(ggufs["q8_0"], "cpu")
    ids = ref.encode("User: " + " ".join(QUESTIONS) + "\n\nAssistant:")
    a, b = ref.feed(ids, ref.zero_state()), q8.feed(ids, q8.zero_state())
    assert int(a.argmax()) == int(b.argmax())
    spread = float(a.max() - a.min())
    assert float(abs(a.numpy() - b).max()) < 0.05 * spread  # b: llama.cpp logits, numpy


# ---------------------------------------------------------------------------- a whole session
def test_a_gguf_session_survives_kill_9_and_resumes_without_replay(ggufs: dict[str, Path], tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    model = str(ggufs["f32"])
    assert cli(home, "chat", "--model", model, "-s", "g", "-t", "0", "--max-tokens", "12", "-m", QUESTIONS[0]).returncode == 0
    assert cli(home, "resume", "g", "-m", QUESTIONS[1]).returncode == 0
    child = pexpect.spawn(sys.executable, ["-m", "weprompt_cli", "resume", "g", "--max-tokens", "100000"],
                          env=env_for(home), cwd=str(ROOT), dimensions=(40, 120), encoding="utf-8", timeout=120)
    try:
        child.expect_exact("general · g ›")
        child.sendline("write a very long report")
        child.expect_exact("\x1b[2K")  # the answer is streaming
        os.kill(child.pid, signal.SIGKILL)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    turns = stored(home, "g")
    assert [t["user"] for t in turns] == QUESTIONS[:2]  # every finished turn, nothing of the killed one

    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.engine import load_engine
    from weprompt_cli.params import SamplingParams
    from weprompt_cli.paths import Home
    from weprompt_cli.personas import find_persona
    from weprompt_cli.store import SessionStore

    h = Home(home, "test")
    store = SessionStore(h)
    engine = load_engine(ggufs["f32"], "cpu", models_dir=h.models, cache_dir=h.cache)
    persona = find_persona("general", home=h)
    with ChatSession.resume(engine, store, store.open("g"), persona, SamplingParams(temperature=0, max_tokens=12)) as chat:
        assert engine.counters.fed == 0 and engine.context.tokens_evaluated == 0  # restored, not replayed
        third = chat.send(QUESTIONS[2]).text()
        assert engine.counters.fed == len(chat.turns[-1].prompt_tokens)
        assert chat.undo() is not None and len(chat.turns) == 2
        again = chat.send(QUESTIONS[2]).text()
        assert again == third  # undo went back to exactly the state before
        fork = chat.fork("g-fork")
    # (the killed resume saved its --max-tokens with the session, and the fork has it too: set it back)
    assert cli(home, "resume", fork, "--max-tokens", "12", "-m", QUESTIONS[0]).returncode == 0
    assert [t["user"] for t in stored(home, "g-fork")] == [*QUESTIONS, QUESTIONS[0]]
    listing = cli(home, "list-sessions", "--json")
    assert {m["name"]: m["model"]["path"].endswith(".gguf") for m in json.loads(listing.stdout)} == {
        "g": True, "g-fork": True}


NO_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this run: " + name)

sys.meta_path.insert(0, NoTorch())
from weprompt_cli.cli import main
sys.argv = ["weprompt", *sys.argv[1:]]
main()
"""


def test_a_gguf_chat_resume_and_fork_never_import_torch(ggufs: dict[str, Path], tmp_path: Path) -> None:
    """The llama.cpp backend samples and checkpoints with numpy: a GGUF chat's process holds no torch (its
    memory is llama.cpp's). Run with `import torch` made to fail."""
    home = tmp_path / "home"
    home.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", NO_TORCH, *args], env=env_for(home), cwd=str(ROOT),
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)

    model = str(ggufs["q8_0"])
    steps = [("chat", "--model", model, "-s", "nt", "-t", "0", "--max-tokens", "12", "-m", QUESTIONS[0]),
             ("resume", "nt", "-t", "1.0", "--top-p", "0.5", "--seed", "7", "-m", QUESTIONS[1]),  # sampled, penalties
             ("sessions", "fork", "nt", "--at", "1", "--as", "nt-fork"),
             ("resume", "nt-fork", "-m", QUESTIONS[2]),
             ("sessions", "show", "nt"),
             ("list-sessions",)]
    for args in steps:
        done = run(*args)
        assert done.returncode == 0 and "torch is blocked" not in done.stderr, (args, done.stderr[-2000:])
    assert [t["user"] for t in stored(home, "nt")] == QUESTIONS[:2]
    assert [t["user"] for t in stored(home, "nt-fork")] == [QUESTIONS[0], QUESTIONS[2]]
    # the same seed samples the same answer again (the numpy sampler's own seeded stream)
    again = run("sessions", "fork", "nt", "--at", "1", "--as", "nt-again")
    assert again.returncode == 0, again.stderr
    assert run("resume", "nt-again", "-t", "1.0", "--top-p", "0.5", "--seed", "7", "-m", QUESTIONS[1]).returncode == 0
    assert stored(home, "nt-again")[-1]["assistant"] == stored(home, "nt")[-1]["assistant"]


def test_the_persona_state_is_cached_for_the_gguf_too(ggufs: dict[str, Path], tmp_path: Path) -> None:
    from weprompt_cli.chat.formats import WORLD
    from weprompt_cli.chat.persona_state import persona_state
    from weprompt_cli.engine import load_engine
    from weprompt_cli.paths import Home
    from weprompt_cli.personas import find_persona

    h = Home(tmp_path / "home", "test")
    engine = load_engine(ggufs["q8_0"], "cpu", cache_dir=h.cache)
    persona = find_persona("sql", home=h)
    first, n, cached = persona_state(engine, WORLD, persona, h.cache)
    assert not cached and n > 0 and engine.counters.fed == n
    second, n2, cached2 = persona_state(engine, WORLD, persona, h.cache)
    assert cached2 and n2 == n and engine.counters.fed == n  # nothing fed the second time
    probe = engine.encode(" SELECT")
    a = engine.feed(probe, engine.clone_state(first))
    b = engine.feed(probe, engine.clone_state(second))
    assert bool((a == b).all())


def test_a_pth_session_resumes_on_the_gguf_only_with_rebuild(pth: Path, ggufs: dict[str, Path], tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert cli(home, "chat", "--model", str(pth), "-s", "p", "-t", "0", "--max-tokens", "8",
               "-m", QUESTIONS[0]).returncode == 0
    refused = cli(home, "resume", "p", "--model", str(ggufs["f16"]), "-m", QUESTIONS[1])
    assert refused.returncode != 0 and "made with another model" in refused.stderr and "--rebuild" in refused.stderr
    assert "Traceback" not in refused.stderr
    rebuilt = cli(home, "resume", "p", "--model", str(ggufs["f16"]), "--rebuild", "-m", QUESTIONS[1])
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "replaying 1 turns" in rebuilt.stderr
    assert len(stored(home, "p")) == 2


# ---------------------------------------------------------------------------- serve
def test_serve_a_gguf_model_on_both_endpoints_with_the_prefix_cache(ggufs: dict[str, Path], tmp_path: Path) -> None:
    import httpx

    from test_server import Server

    home = tmp_path / "home"
    home.mkdir()
    server = Server(home, ggufs["q8_0"])
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            health = client.get("/health").json()
            assert health["model"] == "tiny-q8_0"
            body = {"user_message": QUESTIONS[0], "user_id": "ana", "discussion_id": "1", "temperature": 0,
                    "max_tokens": 8}
            r = client.post("/generate-response", json=body)
            assert r.status_code == 200 and r.json()["generated_text"], r.text
            history = [{"role": "user", "content": QUESTIONS[0]}]
            r = client.post("/v1/chat/completions", json={"messages": history, "temperature": 0, "max_tokens": 8})
            assert r.status_code == 200, r.text
            history += [r.json()["choices"][0]["message"], {"role": "user", "content": QUESTIONS[1]}]
            r = client.post("/v1/chat/completions", json={"messages": history, "temperature": 0, "max_tokens": 8})
            assert r.status_code == 200, r.text
            assert r.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0  # the first exchange was reused
            stats = client.get("/health").json()["stats"]
            assert stats["prefix_cache"]["hits"] >= 1
    finally:
        server.stop()
    assert len(stored(home, "u-ana--1")) == 1


# ---------------------------------------------------------------------------- bad inputs
def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith("  hint:")]
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("weprompt: error: "), result.stderr
    return lines[0]


def test_a_truncated_gguf_is_one_line(ggufs: dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    data = ggufs["q8_0"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert "cut.gguf" in one_line(cli(tmp_path, "chat", "--model", str(cut), "-m", "hi"))


def test_a_gguf_of_another_architecture_is_one_line(tmp_path: Path) -> None:
    from gguf_models import write_tiny_llama_gguf

    llama = write_tiny_llama_gguf(tmp_path / "llama.gguf")
    line = one_line(cli(tmp_path, "chat", "--model", str(llama), "-m", "hi"))
    assert "llama" in line and "RWKV" in line


def test_a_gguf_whose_vocabulary_does_not_match_its_tokenizer_is_one_line(
    ggufs: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    from checkpoints import build_tiny_tokenizer

    model = tmp_path / "m.gguf"
    shutil.copyfile(ggufs["f16"], model)
    build_tiny_tokenizer(tmp_path / "m.tokenizer.json", vocab_size=300)  # another tokenizer beside it
    line = one_line(cli(tmp_path, "chat", "--model", str(model), "-m", "hi"))
    assert "vocabulary" in line and "tokenizer" in line


def test_a_gguf_beside_a_tokenizer_of_its_size_with_other_ids_is_one_line(ggufs: dict[str, Path], tmp_path: Path) -> None:
    """The same tokens under other ids (two swapped) encode text into ids that mean other words to the model:
    the tokens llama.cpp loaded are compared with the tokenizer's, id by id."""
    import shutil

    model = tmp_path / "m.gguf"
    shutil.copyfile(ggufs["f16"], model)
    sidecar = json.loads(ggufs["f16"].with_suffix(".tokenizer.json").read_text())
    vocab = sidecar["model"]["vocab"]
    by_id = {i: t for t, i in vocab.items()}
    a, b = by_id[300], by_id[301]
    vocab[a], vocab[b] = 301, 300
    (tmp_path / "m.tokenizer.json").write_text(json.dumps(sidecar))
    line = one_line(cli(tmp_path, "chat", "--model", str(model), "-m", "hi"))
    assert "does not match" in line and "token 300" in line, line


def test_a_gpu_strategy_on_a_cpu_build_is_one_line(ggufs: dict[str, Path], tmp_path: Path) -> None:
    line = one_line(cli(tmp_path, "chat", "--model", str(ggufs["q8_0"]), "--strategy", "metal", "-m", "hi"))
    assert "metal" in line
    bad = one_line(cli(tmp_path, "chat", "--model", str(ggufs["q8_0"]), "--strategy", "cuda fp16 *2 -> cpu fp32",
                       "-m", "hi"))
    assert "invalid strategy" in bad


def test_without_llama_cpp_a_gguf_says_how_to_install_it(ggufs: dict[str, Path], tmp_path: Path) -> None:
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "llama_cpp.py").write_text("raise ImportError('No module named llama_cpp')\n")
    env = {**env_for(tmp_path), "PYTHONPATH": os.pathsep.join([str(hide), str(ROOT)])}
    result = subprocess.run([sys.executable, "-m", "weprompt_cli", "chat", "--model", str(ggufs["q8_0"]), "-m", "hi"],
                            env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=120, check=False)
    line = one_line(result)
    assert "llama-cpp-python" in line and "setup.sh --gguf" in result.stderr


def test_a_batched_gguf_server_never_imports_torch(ggufs: dict[str, Path], tmp_path: Path) -> None:
    """`weprompt serve` on a GGUF batches its requests in llama.cpp and samples them with numpy: the server runs,
    many requests at once, with `import torch` made to fail, and a greedy answer is the same batched or alone."""
    import threading

    import httpx

    from test_server import Server

    home = tmp_path / "home"
    home.mkdir()
    server = Server(home, ggufs["q8_0"], "--max-batch", "4", launcher=("-c", NO_TORCH))
    try:
        def ask(n: int, **sampling: Any) -> None:
            body = {"user_message": QUESTIONS[n % 2], "user_id": f"u{n}", "discussion_id": "1", "max_tokens": 12,
                    **sampling}
            answers[n] = httpx.post(f"{server.url}/generate-response", json=body, timeout=120)

        answers: dict[int, httpx.Response] = {}
        plan = [{"temperature": 0}, {"temperature": 0}, {"temperature": 1.0, "top_p": 0.9, "seed": 3},
                {"temperature": 1.0, "seed": 4, "presence_penalty": 0.5}]
        threads = [threading.Thread(target=ask, args=(n,), kwargs=kw) for n, kw in enumerate(plan)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(answers[n].status_code == 200 for n in answers), [answers[n].text for n in answers]
        batching = server.stats()["batching"]
        assert batching["enabled"] and batching["steps"] > 0, batching
        alone = httpx.post(f"{server.url}/generate-response", timeout=120, json={
            "user_message": QUESTIONS[0], "user_id": "solo", "discussion_id": "1", "max_tokens": 12, "temperature": 0})
        assert alone.status_code == 200
        assert alone.json()["generated_text"] == answers[0].json()["generated_text"]
    finally:
        server.stop()
    assert "torch is blocked" not in "".join(server.log), "".join(server.log)[-2000:]

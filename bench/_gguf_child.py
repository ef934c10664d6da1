"""The child processes of bench/gguf.py: one engine/format per process, a JSON report as the last stdout line.

    python bench/_gguf_child.py KIND '{"json": "arguments"}'

KIND is `prepare` (build random checkpoints, convert to GGUF, probe), `speed` (decode and
prefill through WePrompt's engine and, for a GGUF, llama.cpp's raw `LlamaContext` loop in
the same process, interleaved; or the bare `rwkv` package loop for a .pth), `raw` (the raw
`LlamaContext` loop alone, without torch: llama.cpp's own memory), `floor` (what an engine
process holds besides its model: torch, the World tokenizer, the GGUF vocabulary check), `resume-build` and
`resume-ttft` (sessions of N turns through the store and `ChatSession.resume` in a fresh
process), `tf` (teacher-forced logits on the demo corpus) and `ask` (the demo evaluation's
greedy answers, as `training.demo_run` gives them, but through `load_engine`: any format).
Thread counts come from the parent: `WEPROMPT_THREADS` (llama.cpp), `OMP_NUM_THREADS` and
`torch.set_num_threads` (torch), all equal.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
# bench/ holds gguf.py: off the path, so that `import gguf` finds the GGUF package.
sys.path[:] = [str(ROOT / "tests"), str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from bench._models import CHAT_SAMPLE as TEXT  # noqa: E402  (bench/ is off the path: see above)

MESSAGE = "Which customers in Paris placed an order last month?"
REPLY = " Join customers to orders and filter on the city: SELECT DISTINCT c.name FROM customers c JOIN orders o.\n\n"


def memory() -> dict[str, int]:
    """This process's VmHWM (peak RSS) and VmRSS, in KiB."""
    out = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    return out


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def strategy_of(path: Path) -> str:
    return "cpu" if path.suffix == ".gguf" else "cpu fp32"


def load(path: Path, cache: Path | None) -> tuple[Any, float]:
    from weprompt_cli.engine import load_engine

    t0 = time.perf_counter()
    engine = load_engine(path, strategy_of(path), cache_dir=cache)
    return engine, time.perf_counter() - t0


def prompt_ids(engine: Any, n: int) -> list[int]:
    ids = engine.encode(TEXT * (n // 60 + 2))
    assert len(ids) >= n + 32, (len(ids), n)
    return ids[:n]


# ---------------------------------------------------------------------------- prepare


def k_prepare(a: dict[str, Any]) -> dict[str, Any]:
    """Random World checkpoints (bf16, like real ones) and their GGUF files, cached; each GGUF probed once."""
    from weprompt_cli.engine.llama_probe import probe_forward
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    work = Path(a["work"])
    made = []
    for item in a["models"]:
        src = Path(item["pth"])
        if not src.exists():
            from checkpoints import build_checkpoint

            t0 = time.perf_counter()
            tmp = src.with_name(f".building-{src.name}")
            build_checkpoint("v7", tmp, n_layer=item["layers"], n_embd=item["embd"], vocab_size=65536,
                             tokenizer=None, dtype="bf16")
            tmp.rename(src)
            made.append(f"built {src.name} in {time.perf_counter() - t0:.0f}s")
        for quant, out in item["gguf"].items():
            out = Path(out)
            if not out.exists():
                t0 = time.perf_counter()
                convert_to_gguf(src, out, quant=quant)
                made.append(f"converted {out.name} in {time.perf_counter() - t0:.0f}s")
            probe_forward(out, cache_dir=work / "cache", n_threads=min(a["threads"], 2))
    return {"made": made}


# ---------------------------------------------------------------------------- speed


def k_speed(a: dict[str, Any]) -> dict[str, Any]:
    """Greedy decode (engine.generate, stop=()) and prefill (engine.feed) against the bare loop, interleaved."""
    import numpy as np

    path, n, p, repeat = Path(a["path"]), a["tokens"], a["prefill"], a["repeat"]
    if path.suffix != ".gguf":  # a GGUF engine samples with numpy: its process never imports torch
        set_threads(a["threads"])
    mem0 = memory()
    engine, load_s = load(path, Path(a["cache"]))
    mem_load = memory()
    from weprompt_cli.engine import SamplingParams

    prompt = prompt_ids(engine, p)
    start = engine.zero_state()
    first = engine.feed(prompt[:32], start)
    greedy = SamplingParams(temperature=0, top_p=1, max_tokens=n)
    gguf = engine.backend == "llama.cpp"
    tokens: dict[str, list[int]] = {}

    def engine_decode() -> int:
        state = engine.clone_state(start)
        gen = engine.generate(first, state, engine.new_sampler(greedy), stop=(), max_tokens=n)
        for _piece in gen:
            pass
        tokens["engine"] = gen.result.tokens
        return len(gen.result.tokens)

    def engine_prefill() -> int:
        state = engine.zero_state()
        engine.feed(prompt, state, chunk=512)
        return len(prompt)

    if gguf:
        ctx = engine.context
        start_blob = engine.clone_state(start).blob  # taken before the raw loop touches sequence 0
        first_np = np.asarray(first)

        def bare_decode() -> int:
            ctx.clear(0)
            ctx.set_state(0, start_blob)
            token, out = int(np.argmax(first_np)), []
            for _ in range(n):
                out.append(token)
                token = int(np.argmax(ctx.eval([token], 0)))
            tokens["bare"] = out
            return n

        def bare_prefill() -> int:
            ctx.clear(0)
            ctx.eval(prompt, 0)
            return len(prompt)
    else:
        import torch

        model = engine.model
        start_t = [t.clone() for t in start]

        def bare_decode() -> int:
            state = [t.clone() for t in start_t]
            token, out = int(torch.argmax(first)), []
            for _ in range(n):
                out.append(token)
                logits, state = model.forward([token], state)
                token = int(torch.argmax(logits.float()))
            tokens["bare"] = out
            return n

        def bare_prefill() -> int:
            model.forward(prompt, None)
            return len(prompt)

    rates: dict[str, list[float]] = {k: [] for k in ("decode", "decode_bare", "prefill", "prefill_bare")}
    pairs = (("decode", engine_decode), ("decode_bare", bare_decode), ("prefill", engine_prefill),
             ("prefill_bare", bare_prefill))
    for _name, fn in pairs:
        fn()  # warm-up (TorchScript profiles its first calls; llama.cpp allocates its graphs)
    for r in range(repeat):
        for name, fn in pairs if r % 2 == 0 else pairs[::-1]:
            t0 = time.perf_counter()
            count = fn()
            rates[name].append(count / (time.perf_counter() - t0))
    mem_end = memory()
    return {
        "backend": engine.backend, "format": engine.info.quantization or "fp32", "strategy": engine.strategy,
        "load_s": load_s, "rates": rates, "same_tokens": tokens.get("engine") == tokens.get("bare"),
        "file_bytes": path.stat().st_size, "n_params": engine.info.n_params,
        "torch_threads": sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None,
        "torch_imported": "torch" in sys.modules,
        "llama_threads": engine.context.n_threads if gguf else None,
        "rss_start_kib": mem0["VmRSS"], "rss_loaded_kib": mem_load["VmRSS"],
        "rss_end_kib": mem_end["VmRSS"], "peak_rss_kib": mem_end["VmHWM"],
    }


def k_raw(a: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp alone (LlamaContext + numpy, no torch, no tokenizer): its own speed and peak RSS."""
    import numpy as np

    from weprompt_cli.engine.llama_context import LlamaContext

    path, n, p = Path(a["path"]), a["tokens"], a["prefill"]
    ctx = LlamaContext.open(path, n_threads=a["threads"], n_batch=512)
    prompt = [(i * 7919) % (ctx.n_vocab - 1) + 1 for i in range(p)]  # fixed ids (no tokenizer here)
    first = ctx.eval(prompt[:32], 0)
    blob = ctx.get_state(0)

    def decode() -> float:
        ctx.clear(0)
        ctx.set_state(0, blob)
        token = int(np.argmax(first))
        t0 = time.perf_counter()
        for _ in range(n):
            token = int(np.argmax(ctx.eval([token], 0)))
        return n / (time.perf_counter() - t0)

    def prefill() -> float:
        ctx.clear(0)
        t0 = time.perf_counter()
        ctx.eval(prompt, 0)
        return p / (time.perf_counter() - t0)

    decode(), prefill()  # warm-up
    rates = {"decode": [decode() for _ in range(a["repeat"])], "prefill": [prefill() for _ in range(a["repeat"])]}
    mem = memory()
    return {"rates": rates, "peak_rss_kib": mem["VmHWM"], "rss_end_kib": mem["VmRSS"],
            "torch_imported": "torch" in sys.modules}


def k_floor(a: dict[str, Any]) -> dict[str, Any]:
    """What an engine process holds besides the model: torch (a .pth engine's), the World tokenizer."""
    from weprompt_cli.engine.tokenizer import world_tokenizer

    steps = [("start", memory())]
    import torch  # noqa: F401

    steps.append(("import torch", memory()))
    world_tokenizer()
    steps.append(("World tokenizer", memory()))
    return {"steps": [{"step": name, "rss_kib": m["VmRSS"], "peak_kib": m["VmHWM"]} for name, m in steps]}


# ---------------------------------------------------------------------------- resume


def _store(home: Path) -> tuple[Any, Any]:
    os.environ["WEPROMPT_HOME"] = str(home)
    from weprompt_cli.paths import resolve_home
    from weprompt_cli.personas import find_persona
    from weprompt_cli.store import SessionStore

    h = resolve_home()
    return SessionStore(h), find_persona("sql", home=h)


def k_resume_build(a: dict[str, Any]) -> dict[str, Any]:
    """Sessions `h{N}` of N turns (~turn_tokens each), fed and checkpointed through the store as chat does."""
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.engine import SamplingParams
    from weprompt_cli.store import Turn, utc_now

    set_threads(a["threads"])
    home = Path(a["home"])
    store, persona = _store(home)
    engine, _ = load(Path(a["path"]), store.home.cache)
    params = SamplingParams(temperature=0, top_p=1, max_tokens=4)
    reply_ids = engine.encode(REPLY)
    out = {}
    for n_turns in a["histories"]:
        name = f"h{n_turns}"
        with ChatSession.start(engine, store, persona, params, name=name) as chat:
            tokens = 0
            for i in range(1, n_turns + 1):
                user = f"{MESSAGE} (turn {i})"
                prompt = chat.fmt.turn_prompt(user, needs_boundary=False)
                p_ids = engine.encode(prompt)
                engine.feed(p_ids + reply_ids, chat.state)
                turn = Turn(index=i, user=user, assistant=REPLY.strip(), prompt_text=prompt, reply_text=REPLY,
                            prompt_tokens=p_ids, reply_tokens=reply_ids, stop_reason="stop",
                            started_at=utc_now(), finished_at=utc_now())
                chat.opened.append_turn(turn, engine.state_to_tensors(chat.state), fingerprint=engine.fingerprint,
                                        layout=engine.state_format)
                tokens += turn.token_count
            out[name] = {"turns": n_turns, "history_tokens": tokens,
                         "state_file_bytes": chat.opened.state_path(n_turns).stat().st_size}
    return {"sessions": out, "state_nbytes": engine.state_nbytes(engine.zero_state())}


def k_resume_ttft(a: dict[str, Any]) -> dict[str, Any]:
    """In this fresh process: open session `name`, resume it, send the next message; time to its first token."""
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.engine import SamplingParams

    set_threads(a["threads"])
    store, persona = _store(Path(a["home"]))
    engine, load_s = load(Path(a["path"]), store.home.cache)
    _ = engine.fingerprint  # cached by the builder (a hash of the file); read once, as the CLI's load does
    params = SamplingParams(temperature=0, top_p=1, max_tokens=4)
    marks: list[float] = []
    plain = engine.decode_step

    def timed_step(logits: Any, state: Any, sampler: Any) -> Any:
        step = plain(logits, state, sampler)
        inner = step.next_token

        def first() -> int:
            token = inner()
            marks.append(time.perf_counter())
            step.next_token = inner
            return token

        step.next_token = first
        return step

    engine.decode_step = timed_step
    runs = []
    for _ in range(a["repeat"]):
        fed0 = engine.counters.fed
        t0 = time.perf_counter()
        opened = store.open(a["name"])
        chat = ChatSession.resume(engine, store, opened, persona, params)
        t_resumed = time.perf_counter()
        fed_resume = engine.counters.fed - fed0
        reply = chat.send(MESSAGE)
        pieces = iter(reply)
        next(pieces, None)
        t_piece = time.perf_counter()
        for _piece in pieces:
            pass
        runs.append({"restore_ms": (t_resumed - t0) * 1e3, "ttft_ms": (marks[-1] - t0) * 1e3,
                     "first_piece_ms": (t_piece - t0) * 1e3, "fed_by_resume": fed_resume,
                     "fed_by_turn": engine.counters.fed - fed0 - fed_resume,
                     "prompt_tokens": len(reply.prompt_tokens), "turns_before": len(chat.turns) - 1})
        chat.undo()  # the next run resumes the same history
        chat.close()
    return {"load_s": load_s, "runs": runs}


# ---------------------------------------------------------------------------- quality


def demo_corpus_ids(tokenizer: Any, n_tokens: int, seed: int) -> list[list[int]]:
    """Held-out documents of the demo corpus, tokenized segment by segment as the app feeds them, ~n_tokens in all."""
    from training.corpus import documents

    docs: list[list[int]] = []
    total, batch = 0, 0
    while total < n_tokens:
        for doc in documents(8, seed + batch, "heldout"):
            ids = [t for seg in doc for t in tokenizer.encode(seg.text)]
            ids = ids[: n_tokens - total]
            if ids:
                docs.append(ids)
                total += len(ids)
        batch += 1
    return docs


def k_tf(a: dict[str, Any]) -> dict[str, Any]:
    """Teacher-forced next-token logits over the demo corpus (one token at a time, each document from zero).

    With `save`: store the logits (the fp32 reference). With `ref`: top-1 agreement and mean KL(ref || this).
    """
    import hashlib

    import numpy as np

    set_threads(a["threads"])
    engine, _ = load(Path(a["path"]), Path(a["cache"]))
    docs = demo_corpus_ids(engine.tokenizer, a["tokens"], a["seed"])
    rows = []
    t0 = time.perf_counter()
    for ids in docs:
        state = engine.zero_state()
        for token in ids:
            rows.append(np.asarray(engine.feed([token], state)))  # torch (.pth) or numpy (GGUF) logits
    seconds = time.perf_counter() - t0
    logits = np.stack(rows).astype(np.float32)
    digest = hashlib.sha1(json.dumps(docs).encode()).hexdigest()[:12]
    info = engine.info
    out: dict[str, Any] = {"positions": int(logits.shape[0]), "documents": len(docs), "ids_sha1": digest,
                           "shape": f"{info.n_layer} x {info.n_embd}, head size {info.head_size}, "
                                    f"vocabulary {info.vocab_size}",
                           "tok_per_s": logits.shape[0] / seconds}
    if a.get("save"):
        np.save(a["save"], logits)
    if a.get("ref"):
        ref = np.load(a["ref"])
        if ref.shape != logits.shape:
            raise SystemExit(f"reference logits {ref.shape} vs {logits.shape}")

        def log_softmax(x: Any) -> Any:
            x = x.astype(np.float64)
            x = x - x.max(axis=1, keepdims=True)
            return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

        lp, lq = log_softmax(ref), log_softmax(logits)
        kl = (np.exp(lp) * (lp - lq)).sum(axis=1)
        agree = ref.argmax(axis=1) == logits.argmax(axis=1)
        out.update({"top1_agree": int(agree.sum()), "mean_kl": float(kl.mean()),
                    "max_abs_logit_diff": float(np.abs(ref - logits).max())})
    return out


def k_ask(a: dict[str, Any]) -> dict[str, Any]:
    """`training.demo_run`'s greedy answers (same prompts, same loop) through `load_engine`, for any format."""
    import numpy as np

    from training.corpus import fold, persona_prefix

    set_threads(a["threads"])
    t0 = time.perf_counter()
    engine, _ = load(Path(a["path"]), Path(a["cache"]))
    load_s = time.perf_counter() - t0
    sep = "\n\n"
    prefix: dict[str, Any] = {}
    results = []
    for item in a["items"]:
        persona = item.get("persona", "sql")
        if persona not in prefix:
            st = engine.zero_state()
            engine.feed(engine.encode(persona_prefix(persona)), st)
            prefix[persona] = st
        state = engine.clone_state(prefix[persona])
        t1 = time.perf_counter()
        logits = engine.feed(engine.encode(f"User: {fold(item['question'])}\n\nAssistant:"), state)
        t2 = time.perf_counter()
        out: list[int] = []
        text, ended = "", False
        while len(out) < a["max_tokens"]:
            nxt = int(np.argmax(np.asarray(logits)))
            out.append(nxt)
            text = engine.tokenizer.decode(out)
            if sep in text:
                ended = True
                break
            logits = engine.feed([nxt], state)
        results.append({"text": text.split(sep)[0].lstrip(" "), "ended": ended, "tokens": len(out),
                        "prefill_s": round(t2 - t1, 4), "seconds": round(time.perf_counter() - t2, 4)})
    return {"load_s": round(load_s, 3), "results": results}


KINDS = {"prepare": k_prepare, "speed": k_speed, "raw": k_raw, "floor": k_floor, "resume-build": k_resume_build,
         "resume-ttft": k_resume_ttft, "tf": k_tf, "ask": k_ask}


def main() -> None:
    import contextlib

    kind = sys.argv[1]
    args = json.loads(sys.argv[2] if len(sys.argv) > 2 else sys.stdin.read())

    with contextlib.redirect_stdout(sys.stderr):  # the rwkv package prints banners: stdout carries the JSON only
        report = KINDS[kind](args)
    report["vm_hwm_kib"] = memory()["VmHWM"]
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()

"""GGUF through WePrompt's llama.cpp backend vs the rwkv package fp32, on this CPU (issue 16; run by hand).

    python bench/gguf.py                  # the full run (about 20-30 minutes on 2 cores)
    python bench/gguf.py --quick          # a smoke run with tiny sizes (a minute or two)
    python bench/gguf.py --shapes 12x768 --skip-quality --rounds 3 --threads 2

Every engine/format runs in its own child process (bench/_gguf_child.py), formats
alternating round by round (forward, then backward), with the same thread count for
torch and llama.cpp (`--threads`, 2 by default: WEPROMPT_THREADS, OMP_NUM_THREADS,
torch.set_num_threads). The fp32 baseline is measured in the same run.

- Speed, random-weight RWKV-7 of each `--shapes` (World vocabulary, 65536; bf16 .pth like
  real checkpoints, converted with `convert_to_gguf`): greedy decode of `--tokens` tokens
  through `engine.generate` (stop=()) and a `--prefill`-token `engine.feed`; in the same
  process, interleaved, the bare loop on the same model: llama.cpp's raw `LlamaContext`
  eval loop (argmax on the numpy logits) for a GGUF, `model.forward` for the .pth. The
  overhead is engine time per token over raw time per token, minus one. Peak RSS is the
  child's VmHWM (load included); "llama.cpp alone" is a child with LlamaContext and numpy
  only (no torch, no tokenizer). Rates are the best of all rounds x repeats (the steadier
  estimate on a shared CPU); the JSON keeps every sample.
- Resume TTFT: sessions of `--histories` turns (~40 tokens each) built through the store
  on the .pth and on its `--resume-quant` GGUF; each history is resumed in a fresh process
  with `ChatSession.resume` and the next message sent: time from `store.open` to the first
  token sampled (and fed), and `engine.counters.fed` (resume must feed nothing; the turn,
  its prompt only).
- Quality on the demo model (head size 32, its own BPE tokenizer): teacher-forced top-1
  agreement and mean KL of each GGUF vs the .pth fp32 over `--tf-tokens` tokens of
  held-out demo corpus (`training.corpus`), and the SQL held-out execution score of
  `training.evaluate.evaluate` (fp32 through `training.demo_run`, the rwkv package; every
  other format through `load_engine` with the same greedy loop).

Writes the table to bench/results/gguf-cpu.txt and the numbers to gguf-cpu.json (a
--quick run writes to the temp folder unless --out is given).
"""

from __future__ import annotations

import sys

if __name__ == "gguf":
    # A script run from bench/ has this folder first on sys.path, so its `import gguf` (the GGUF
    # package, which WePrompt's llama.cpp backend reads vocabularies with) finds this file.
    # Hand the import over to the real package instead of shadowing it.
    import importlib
    from pathlib import Path as _Path

    _here = _Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if _Path(p or ".").resolve() != _here]
    del sys.modules["gguf"]
    sys.modules["gguf"] = importlib.import_module("gguf")

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _gguf_quiet import Quiet, cpu_busy_s, own_cpu_s, wait_for_quiet

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).with_name("_gguf_child.py")
DEMO = ROOT / "weprompt_cli" / "demo" / "weprompt-demo-rwkv7.pth"


def demo_tag() -> str:
    """A short hash of the shipped demo model: its GGUF files are rebuilt when it is retrained."""
    import hashlib

    return hashlib.sha1(DEMO.read_bytes()).hexdigest()[:10]


def demo_gguf(work: Path, quant: str) -> Path:
    return work / f"demo-{demo_tag()}-{quant}.gguf"
LOADS: list[tuple[float, float, float]] = []  # (time, 1-min load average, 5-min) after each child
GATED = ("speed", "raw", "resume-ttft")  # the children whose timings other sessions' CPU use would spoil


def child(kind: str, args: dict[str, Any], threads: int, timeout: float = 1800) -> dict[str, Any]:
    """Run one child; its JSON report (a failing child raises with the tail of its stderr).

    The report gains `_others`: the share of all CPUs other processes used while it ran.
    """
    env = dict(os.environ, WEPROMPT_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    if kind in GATED and Quiet.gate < 1:
        wait_for_quiet(kind)
    b0, o0, t0 = cpu_busy_s(), own_cpu_s(), time.time()
    proc = subprocess.run([sys.executable, str(CHILD), kind], input=json.dumps(args), capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT, check=False)
    wall = time.time() - t0
    others = max(0.0, (cpu_busy_s() - b0 - (own_cpu_s() - o0)) / (wall * (os.cpu_count() or 1)))
    LOADS.append((time.time(), *os.getloadavg()[:2]))
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {kind} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    if kind in GATED:
        Quiet.foreign.append((kind, others))
    return {**json.loads(lines[-1]), "_others": others, "_wall_s": wall}


def timed_child(kind: str, args: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    """`child`, run again (up to --retries times) while others used over --max-others of the CPUs; the quietest run."""
    runs = [child(kind, args, a.threads)]
    while runs[-1]["_others"] > a.max_others and len(runs) <= a.retries:
        say(f"[quiet] others used {runs[-1]['_others']:.0%} of the CPUs during {kind}; again")
        runs.append(child(kind, args, a.threads))
    quietest = min(runs, key=lambda r: r["_others"])
    return {**quietest, "_attempts": len(runs)}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def shape_of(text: str) -> tuple[int, int]:
    layers, embd = text.lower().split("x")
    return int(layers), int(embd)


def best(xs: list[float]) -> float:
    return max(xs)


def fmt_name(quant: str) -> str:
    return quant.upper() if quant != "fp32" else "rwkv fp32"


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# ---------------------------------------------------------------------------- parts


def run_speed(a: argparse.Namespace, models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for shape, m in models.items():
        rows: dict[str, dict[str, Any]] = {}
        order = ["fp32", *a.quants]
        for r in range(a.rounds):
            for quant in order if r % 2 == 0 else order[::-1]:
                path = m["pth"] if quant == "fp32" else m["gguf"][quant]
                say(f"[speed] {shape} {fmt_name(quant)} round {r + 1}/{a.rounds}")
                rep = timed_child("speed", {"path": str(path), "cache": str(a.work / "cache"), "threads": a.threads,
                                            "tokens": a.tokens, "prefill": a.prefill, "repeat": a.repeat}, a)
                row = rows.setdefault(quant, {"runs": [], "raw": []})
                row["runs"].append(rep)
                if quant != "fp32":
                    say(f"[speed] {shape} {fmt_name(quant)} llama.cpp alone, round {r + 1}/{a.rounds}")
                    row["raw"].append(timed_child("raw", {"path": str(path), "threads": a.threads, "tokens": a.tokens,
                                                          "prefill": a.prefill, "repeat": a.repeat}, a))
        for quant, row in rows.items():
            runs = row["runs"]

            def pool(key: str, runs: list[dict[str, Any]] = runs) -> list[float]:
                return [x for rep in runs for x in rep["rates"][key]]

            row.update({
                "decode": best(pool("decode")), "decode_bare": best(pool("decode_bare")),
                "prefill": best(pool("prefill")), "prefill_bare": best(pool("prefill_bare")),
                "decode_median": statistics.median(pool("decode")),
                "decode_bare_median": statistics.median(pool("decode_bare")),
                "peak_rss_mib": max(rep["peak_rss_kib"] for rep in runs) / 1024,
                "rss_end_mib": max(rep["rss_end_kib"] for rep in runs) / 1024,
                "file_mib": runs[0]["file_bytes"] / 2**20, "same_tokens": all(rep["same_tokens"] for rep in runs),
                "load_s": min(rep["load_s"] for rep in runs), "n_params": runs[0]["n_params"],
                "others_max": max(rep["_others"] for rep in runs + row["raw"]),
            })
            if row["raw"]:
                row["alone_decode"] = best([x for rep in row["raw"] for x in rep["rates"]["decode"]])
                row["alone_peak_rss_mib"] = max(rep["peak_rss_kib"] for rep in row["raw"]) / 1024
            row["overhead_pct"] = (row["decode_bare"] / row["decode"] - 1) * 100
        base = rows["fp32"]
        for row in rows.values():
            row["decode_x"] = row["decode"] / base["decode"]
            row["prefill_x"] = row["prefill"] / base["prefill"]
            row["rss_x"] = row["peak_rss_mib"] / base["peak_rss_mib"]
        out[shape] = rows
    first = next(iter(models.values()))
    say("[speed] RSS floor of an engine process")
    floor = child("floor", {"path": str(first["gguf"][a.quants[0]])}, a.threads)["steps"]
    return {"shapes": out, "floor": floor}


def run_resume(a: argparse.Namespace, models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    m = models[a.resume_shape]
    out: dict[str, Any] = {}
    for label, path in (("rwkv fp32 (.pth)", m["pth"]), (f"GGUF {a.resume_quant.upper()}", m["gguf"][a.resume_quant])):
        home = Path(tempfile.mkdtemp(prefix="weprompt-bench-gguf-resume-"))
        say(f"[resume] {label}: building sessions of {a.histories} turns")
        built = child("resume-build", {"path": str(path), "home": str(home), "threads": a.threads,
                                       "histories": a.histories}, a.threads)
        rows = []
        for n in a.histories:
            say(f"[resume] {label}: {n} turns, fresh process")
            rep = timed_child("resume-ttft", {"path": str(path), "home": str(home), "name": f"h{n}",
                                              "threads": a.threads, "repeat": a.resume_repeat}, a)
            runs = rep["runs"]
            rows.append({"turns": n, "history_tokens": built["sessions"][f"h{n}"]["history_tokens"],
                         "state_file_kib": built["sessions"][f"h{n}"]["state_file_bytes"] / 1024,
                         "ttft_first_ms": runs[0]["ttft_ms"],
                         "ttft_median_ms": statistics.median(r["ttft_ms"] for r in runs),
                         "restore_median_ms": statistics.median(r["restore_ms"] for r in runs),
                         "fed_by_resume": max(r["fed_by_resume"] for r in runs),
                         "fed_by_turn": sorted({r["fed_by_turn"] for r in runs}),
                         "prompt_tokens": sorted({r["prompt_tokens"] for r in runs}), "runs": runs,
                         "load_s": rep["load_s"]})
        medians = [r["ttft_median_ms"] for r in rows]
        flat = max(medians) / min(medians)
        only_new = all(r["fed_by_resume"] == 0 and r["fed_by_turn"] == r["prompt_tokens"] for r in rows)
        out[label] = {"rows": rows, "spread": flat, "only_prompt_fed": only_new, "path": str(path)}
    return out


def run_quality(a: argparse.Namespace) -> dict[str, Any]:
    import training.evaluate as tev

    gguf = {q: demo_gguf(a.work, q) for q in a.quality_quants}  # the demo model in the tree now (it gets retrained)
    demo = {"pth": str(DEMO), "gguf": {q: str(p) for q, p in gguf.items()}}
    child("prepare", {"work": str(a.work), "threads": a.threads, "models": [demo]}, a.threads)
    cache = str(a.work / "cache")
    ref = a.work / "demo-fp32-logits.npy"
    committed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", str(DEMO)], cwd=ROOT, check=False).returncode == 0
    out: dict[str, Any] = {"formats": {}, "demo_sha1": demo_tag(), "demo_bytes": DEMO.stat().st_size,
                           "demo_as_committed": committed,
                           "head": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                                  text=True, check=False).stdout.strip()}
    say("[quality] teacher-forced logits, rwkv fp32")
    base = child("tf", {"path": str(DEMO), "cache": cache, "threads": a.threads, "tokens": a.tf_tokens,
                        "seed": 1234, "save": str(ref)}, a.threads)
    out["tf_positions"], out["tf_documents"], out["demo_shape"] = base["positions"], base["documents"], base["shape"]
    for q, path in gguf.items():
        say(f"[quality] teacher-forced logits, {q.upper()}")
        rep = child("tf", {"path": str(path), "cache": cache, "threads": a.threads, "tokens": a.tf_tokens,
                           "seed": 1234, "ref": str(ref)}, a.threads)
        if rep["ids_sha1"] != base["ids_sha1"]:
            raise RuntimeError(f"{q}: the GGUF's tokenizer gave other ids for the corpus")
        out["formats"][q] = {"top1": rep["top1_agree"] / rep["positions"], "top1_count": rep["top1_agree"],
                             "mean_kl": rep["mean_kl"], "max_abs_logit_diff": rep["max_abs_logit_diff"],
                             "file_kib": path.stat().st_size / 1024}
    plain_ask = tev.ask

    def engine_ask(model: Path, items: list[dict[str, str]], max_tokens: int = 200, timeout: float = 600) -> Any:
        return child("ask", {"path": str(model), "cache": cache, "threads": a.threads, "items": items,
                             "max_tokens": max_tokens}, a.threads, timeout=3600)

    def score(model: Path, via_engine: bool) -> dict[str, Any]:
        tev.ask = engine_ask if via_engine else plain_ask
        try:
            rep = tev.evaluate(model, n_generated=a.sql_generated, n_other=a.sql_other, max_tokens=200,
                               with_natural=True)
        finally:
            tev.ask = plain_ask
        nat = rep.by_kind.get("natural", (0, 0))
        return {"heldout": rep.heldout_match, "heldout_total": rep.heldout_total, "fixed": rep.fixed_match,
                "natural": nat[0], "natural_total": nat[1], "turn_end": rep.turn_end, "turn_total": rep.turn_total,
                "decode_tok_s": rep.tokens_per_s, "by_kind": {k: list(v) for k, v in sorted(rep.by_kind.items())}}

    say("[quality] SQL held-out, rwkv fp32 (training.demo_run)")
    out["sql_fp32"] = score(DEMO, via_engine=False)
    say("[quality] SQL held-out, rwkv fp32 through load_engine")
    out["sql_fp32_engine"] = score(DEMO, via_engine=True)
    for q, path in gguf.items():
        say(f"[quality] SQL held-out, {q.upper()} through load_engine")
        out["formats"][q]["sql"] = score(path, via_engine=True)
    return out


# ---------------------------------------------------------------------------- report


def report(a: argparse.Namespace, res: dict[str, Any]) -> tuple[str, list[tuple[str, bool]]]:
    lines: list[str] = []
    goals: list[tuple[str, bool]] = []
    w = lines.append
    w(f"# bench/gguf.py: {res['env']['cpu']}, {a.threads} threads (torch and llama.cpp); "
      f"torch {res['env']['torch']}, rwkv {res['env']['rwkv']}, llama-cpp-python {res['env']['llama_cpp_python']}")
    w(f"# command: {res['command']}")
    w(f"# started {res['started']}, took {res['minutes']:.1f} min; load average (1-min) at start {res['load']['start'][0]:.2f}, "
      f"during the run min {res['load']['min']:.2f} / median {res['load']['median']:.2f} / max {res['load']['max']:.2f}, "
      f"at end {res['load']['end'][0]:.2f} ({res['env']['cpus']} CPUs shared with other sessions; this run's own "
      f"children add up to {a.threads})")
    o = res["others"]
    w(f"# other processes' CPU use while the timed children ran (share of all CPUs, /proc/stat minus this run's): "
      f"median {o['median']:.0%}, max {o['max']:.0%}; waited {o['waited_min']:.1f} min for quiet before timed children "
      f"(gate {a.gate:.0%}; a child rerun when others used > {a.max_others:.0%}, up to {a.retries} times)")
    if "speed" in res:
        w("")
        w(f"## speed: random RWKV-7, World vocabulary; greedy decode of {a.tokens} tokens (engine.generate, stop=()), "
          f"{a.prefill}-token prefill (engine.feed)")
        w(f"## best of {a.rounds} rounds x {a.repeat} repeats, each format in its own process; 'bare' = same process, "
          "interleaved: LlamaContext eval loop (GGUF) / model.forward loop (.pth)")
        for shape, rows in res["speed"]["shapes"].items():
            p = rows["fp32"]["n_params"]
            w("")
            w(f"### {shape} ({p / 1e6:.0f}M params)")
            w(f"{'format':>10} {'file MiB':>9} {'decode':>8} {'x fp32':>7} {'prefill':>8} {'x fp32':>7} "
              f"{'bare dec':>9} {'overhead':>9} {'alone dec':>10} {'peak RSS':>9} {'x fp32':>7} {'alone RSS':>10} {'others':>7}  same tokens")
            for quant, r in rows.items():
                alone = f"{r['alone_decode']:10.1f}" if "alone_decode" in r else f"{'-':>10}"
                alone_rss = f"{r['alone_peak_rss_mib']:10.0f}" if "alone_peak_rss_mib" in r else f"{'-':>10}"
                w(f"{fmt_name(quant):>10} {r['file_mib']:9.0f} {r['decode']:8.1f} {r['decode_x']:6.2f}x "
                  f"{r['prefill']:8.1f} {r['prefill_x']:6.2f}x {r['decode_bare']:9.1f} {r['overhead_pct']:8.1f}% "
                  f"{alone} {r['peak_rss_mib']:9.0f} {r['rss_x']:6.2f}x {alone_rss} {r['others_max'] * 100:6.0f}%  "
                  f"{'yes' if r['same_tokens'] else 'NO'}")
            for quant, goal in (("q8_0", 2.0), ("q4_0", 3.0)):
                if quant in rows:
                    text = f"{shape}: {quant.upper()} decode {rows[quant]['decode_x']:.2f}x rwkv fp32 (goal >= {goal:.1f}x)"
                    goals.append((text, rows[quant]["decode_x"] >= goal))
            for quant in a.quants:
                text = (f"{shape}: {quant.upper()} WePrompt overhead over raw llama.cpp "
                        f"{rows[quant]['overhead_pct']:.1f}% (goal <= 10%)")
                goals.append((text, rows[quant]["overhead_pct"] <= 10))
            if "q8_0" in rows:
                text = (f"{shape}: Q8_0 peak RSS {rows['q8_0']['peak_rss_mib']:.0f} MiB = {rows['q8_0']['rss_x']:.2f} "
                        f"of fp32's {rows['fp32']['peak_rss_mib']:.0f} MiB (goal <= 0.25)")
                goals.append((text, rows["q8_0"]["rss_x"] <= 0.25))
        w("(decode/prefill/bare/alone in tokens/s; overhead = bare tok/s / engine tok/s - 1; peak RSS = VmHWM in MiB, "
          "load included; 'alone' = a child with LlamaContext + numpy only, no torch; others = the most CPU other processes "
          "used during this row's children, as a share of all CPUs; same tokens = engine and bare loop decoded the same ids)")
        steps, prev = [], 0
        for s in res["speed"]["floor"]:
            steps.append(f"{s['step']} +{(s['rss_kib'] - prev) / 1024:.0f}" + (
                f" (peak {s['peak_kib'] / 1024:.0f})" if s["peak_kib"] > s["rss_kib"] + 20 * 1024 else ""))
            prev = s["rss_kib"]
        w("RSS floor of an engine process, MiB: " + ", ".join(steps))
    if "resume" in res:
        w("")
        w(f"## resume TTFT ({a.resume_shape}): sessions of N turns through the store; each resumed in a fresh process "
          f"(ChatSession.resume, then send): store.open -> first token sampled and fed; median of {a.resume_repeat}")
        for label, block in res["resume"].items():
            w(f"### {label}")
            w(f"{'turns':>6} {'history tok':>12} {'state KiB':>10} {'restore ms':>11} {'TTFT ms':>8} {'1st run ms':>11} "
              f"{'fed by resume':>14} {'fed by turn':>12} {'prompt tok':>11}")
            for r in block["rows"]:
                w(f"{r['turns']:>6} {r['history_tokens']:>12} {r['state_file_kib']:>10.0f} {r['restore_median_ms']:>11.1f} "
                  f"{r['ttft_median_ms']:>8.1f} {r['ttft_first_ms']:>11.1f} {r['fed_by_resume']:>14} "
                  f"{','.join(map(str, r['fed_by_turn'])):>12} {','.join(map(str, r['prompt_tokens'])):>11}")
            w(f"TTFT max/min over histories: {block['spread']:.2f}; only the new prompt fed: {block['only_prompt_fed']}")
        gg = next(b for k, b in res["resume"].items() if k.startswith("GGUF"))
        pth = next(b for k, b in res["resume"].items() if not k.startswith("GGUF"))
        text = (f"resume TTFT flat in history on GGUF (max/min {gg['spread']:.2f}, .pth {pth['spread']:.2f}; "
                "goal <= 1.5 and resume feeds nothing, the turn only its prompt)")
        goals.append((text, gg["spread"] <= 1.5 and gg["only_prompt_fed"] and pth["only_prompt_fed"]))
    if "quality" in res:
        q = res["quality"]
        f0, fe = q["sql_fp32"], q["sql_fp32_engine"]
        w("")
        w(f"## quality, demo model ({DEMO.name}, sha1 {q['demo_sha1']}..., "
          f"{'as committed in' if q['demo_as_committed'] else 'NOT as committed in'} {q['head']}; {q['demo_shape']}, its own BPE): "
          f"teacher-forced over {q['tf_positions']} tokens "
          f"({q['tf_documents']} held-out corpus documents) vs the .pth fp32; SQL held-out execution score "
          f"(training.evaluate, {f0['heldout_total']} questions: 10 fixed + {a.sql_generated} generated; plain questions apart)")
        w(f"{'format':>18} {'file KiB':>9} {'top-1 agree':>12} {'mean KL':>9} {'SQL held-out':>13} {'vs fp32':>8} "
          f"{'plain':>6} {'turn-end':>9}")

        def sql_cols(s: dict[str, Any]) -> str:
            d = s["heldout"] - f0["heldout"]
            return (f"{s['heldout']:>6}/{s['heldout_total']:<6} {d:>+8d} {s['natural']:>3}/{s['natural_total']:<2} "
                    f"{s['turn_end']:>4}/{s['turn_total']:<4}")

        w(f"{'fp32 (demo_run)':>18} {DEMO.stat().st_size / 1024:9.0f} {'(reference)':>12} {'':>9} {sql_cols(f0)}")
        w(f"{'fp32 (load_engine)':>18} {DEMO.stat().st_size / 1024:9.0f} {'':>12} {'':>9} {sql_cols(fe)}")
        for quant, r in q["formats"].items():
            w(f"{quant.upper():>18} {r['file_kib']:9.0f} {r['top1'] * 100:11.2f}% {r['mean_kl']:9.5f} {sql_cols(r['sql'])}")
        if "q8_0" in q["formats"]:
            r = q["formats"]["q8_0"]
            goals.append((f"demo Q8_0 teacher-forced top-1 agreement {r['top1'] * 100:.2f}% (goal >= 97%)", r["top1"] >= 0.97))
            d = r["sql"]["heldout"] - f0["heldout"]
            text = (f"demo Q8_0 SQL held-out {r['sql']['heldout']}/{r['sql']['heldout_total']} vs fp32 "
                    f"{f0['heldout']} ({d:+d}; goal within one question)")
            goals.append((text, abs(d) <= 1))
        for quant in ("q4_0", "q5_1", "f16"):
            if quant in q["formats"]:
                r = q["formats"][quant]
                lines.append(f"(report) {quant.upper()}: top-1 {r['top1'] * 100:.2f}%, SQL {r['sql']['heldout']} vs fp32 "
                             f"{f0['heldout']} ({r['sql']['heldout'] - f0['heldout']:+d})")
    for part, why in res.get("failed", {}).items():
        w("")
        w(f"## {part}: FAILED, {why.splitlines()[0]}")
    w("")
    w("## goals")
    for text, ok in goals:
        w(f"{mark(ok)}  {text}")
    return "\n".join(lines) + "\n", goals


def environment(threads: int) -> dict[str, Any]:
    from importlib.metadata import version

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "threads": threads, "torch": version("torch"), "rwkv": version("rwkv"),
            "llama_cpp_python": version("llama_cpp_python"), "gguf": version("gguf"), "python": platform.python_version()}


def main() -> None:
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != here]  # `import gguf`: the package
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and counts: a smoke run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", default="12x768,24x1024", help="random RWKV-7 shapes, LAYERSxEMBD")
    ap.add_argument("--quants", default="f16,q8_0,q4_0", help="GGUF formats for the speed part")
    ap.add_argument("--tokens", type=int, default=128, help="greedy decode tokens per run")
    ap.add_argument("--prefill", type=int, default=128, help="prompt tokens per prefill run")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over the formats (a fresh process each)")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per process (after a warm-up)")
    ap.add_argument("--histories", default="1,16,64", help="turns of the resumed sessions")
    ap.add_argument("--resume-shape", help="shape for the resume part (default: the first of --shapes)")
    ap.add_argument("--resume-quant", default="q8_0")
    ap.add_argument("--resume-repeat", type=int, default=3)
    ap.add_argument("--quality-quants", default="f16,q8_0,q5_1,q4_0")
    ap.add_argument("--tf-tokens", type=int, default=4000, help="teacher-forced tokens of the demo corpus")
    ap.add_argument("--sql-generated", type=int, default=190, help="generated held-out SQL questions (plus 10 fixed)")
    ap.add_argument("--sql-other", type=int, default=2, help="other personas' prompts per persona (turn-end rate)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: speed, resume, quality")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "weprompt-bench" / "gguf",
                    help="cache of built checkpoints and GGUF files")
    ap.add_argument("--gate", type=float, default=0.15,
                    help="before a timed child, wait while other processes use more than this share of the CPUs (1: never)")
    ap.add_argument("--gate-wait", type=float, default=180, help="seconds one timed child waits at most for quiet")
    ap.add_argument("--gate-budget", type=float, default=10, help="minutes of waiting for quiet in all")
    ap.add_argument("--max-others", type=float, default=0.10,
                    help="run a timed child again when others used more than this share of the CPUs meanwhile")
    ap.add_argument("--retries", type=int, default=2, help="reruns of a timed child at most (see --max-others)")
    ap.add_argument("--wait-load", type=float, default=0.0,
                    help="after preparing, wait until the 1-minute load average is below this (0: don't wait)")
    ap.add_argument("--wait-max", type=float, default=30.0, help="minutes to wait at most for --wait-load")
    ap.add_argument("--out", type=Path, help="the .txt to write (default bench/results/gguf-cpu.txt; a --quick run: temp)")
    a = ap.parse_args()
    if a.quick:  # tiny sizes, where the command line left the defaults
        quick = {"shapes": "2x128", "tokens": 16, "prefill": 32, "rounds": 1, "repeat": 1, "histories": "1,4",
                 "resume_repeat": 2, "tf_tokens": 300, "sql_generated": 10, "sql_other": 1, "gate_wait": 20}
        for name, value in quick.items():
            if getattr(a, name) == ap.get_default(name):
                setattr(a, name, value)
    Quiet.gate, Quiet.max_wait_s, Quiet.budget_s = a.gate, a.gate_wait, a.gate_budget * 60
    a.quants = [q.strip().lower() for q in a.quants.split(",") if q.strip()]
    a.quality_quants = [q.strip().lower() for q in a.quality_quants.split(",") if q.strip()]
    a.histories = [int(x) for x in a.histories.split(",")]
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    shapes = [s.strip() for s in a.shapes.split(",") if s.strip()]
    a.resume_shape = a.resume_shape or shapes[0]
    out_txt = a.out or (Path(tempfile.gettempdir()) / "gguf-cpu-quick.txt" if a.quick
                        else ROOT / "bench" / "results" / "gguf-cpu.txt")
    a.work.mkdir(parents=True, exist_ok=True)

    started = time.time()
    res: dict[str, Any] = {"command": "python bench/gguf.py " + " ".join(shlex.quote(x) for x in sys.argv[1:]),
                           "prepare_started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
                           "env": environment(a.threads)}
    models: dict[str, dict[str, Any]] = {}
    need_shapes = set(shapes if "speed" not in skip else []) | ({a.resume_shape} if "resume" not in skip else set())
    for shape in sorted(need_shapes, key=lambda s: shape_of(s)[0] * shape_of(s)[1]):
        layers, embd = shape_of(shape)
        quants = sorted(set(a.quants) | ({a.resume_quant} if shape == a.resume_shape else set()))
        pth = a.work / f"rwkv7-{layers}x{embd}-world.pth"
        models[shape] = {"layers": layers, "embd": embd, "pth": pth,
                         "gguf": {q: a.work / f"rwkv7-{layers}x{embd}-world-{q}.gguf" for q in quants}}
    prep = [{**m, "pth": str(m["pth"]), "gguf": {q: str(p) for q, p in m["gguf"].items()}} for m in models.values()]
    say(f"[prepare] checkpoints and GGUF files under {a.work}")
    made = child("prepare", {"work": str(a.work), "threads": a.threads, "models": prep}, a.threads, timeout=7200)["made"]
    for line in made:
        say(f"[prepare] {line}")
    if a.wait_load:
        deadline = time.time() + a.wait_max * 60
        while os.getloadavg()[0] >= a.wait_load and time.time() < deadline:
            say(f"[wait] load average {os.getloadavg()[0]:.2f} >= {a.wait_load}; waiting")
            time.sleep(20)
    prepared = time.time()
    start_load = os.getloadavg()
    LOADS.clear()
    res["started"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(prepared))
    parts = {"speed": lambda: run_speed(a, {s: models[s] for s in shapes}), "resume": lambda: run_resume(a, models),
             "quality": lambda: run_quality(a)}
    for part, run in parts.items():
        if part in skip:
            continue
        try:
            res[part] = run()
        except (RuntimeError, OSError, ValueError, KeyError, subprocess.TimeoutExpired) as exc:  # keep the rest
            res.setdefault("failed", {})[part] = f"{type(exc).__name__}: {exc}"
            say(f"[{part}] FAILED: {exc}")
    ones = [x[1] for x in LOADS] or [os.getloadavg()[0]]
    res["minutes"] = (time.time() - prepared) / 60
    res["prepare_and_wait_minutes"] = (prepared - started) / 60
    shares = [x for _, x in Quiet.foreign] or [0.0]
    res["others"] = {"median": statistics.median(shares), "max": max(shares), "waited_min": Quiet.waited_s / 60,
                     "samples": Quiet.foreign}
    res["load"] = {"start": list(start_load[:3]), "end": list(os.getloadavg()[:3]), "min": min(ones),
                   "median": statistics.median(ones), "max": max(ones), "samples": LOADS}
    text, goals = report(a, res)
    res["goals"] = [{"goal": g, "pass": ok} for g, ok in goals]
    print(text)
    out_txt.parent.mkdir(parents=True, exist_ok=True)
    out_txt.write_text(text)
    out_txt.with_suffix(".json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    say(f"written to {out_txt} and {out_txt.with_suffix('.json')}")


if __name__ == "__main__":
    main()

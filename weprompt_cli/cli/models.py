"""`weprompt models list|pull|rm|convert`: the catalog, downloads and pre-conversion."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from weprompt_cli.cli.app import models_app
from weprompt_cli.context import Context
from weprompt_cli.paths import Home


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _params(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def model_rows(home: Home) -> list[dict[str, Any]]:
    """One dict per catalog model: what `list` shows (also its --json).

    `downloaded`: any of its files is on disk (`pth_downloaded` and each GGUF build's
    `downloaded` say which); `auto`: what `pull` fetches and `--strategy auto` runs here.
    """
    from weprompt_cli.hardware.advice import choose_strategy
    from weprompt_cli.hardware.inventory import detect_inventory
    from weprompt_cli.models.catalog import load_catalog
    from weprompt_cli.models.resolve import auto_format, gguf_fit, llama_cpp_status

    inventory = detect_inventory()
    llama = llama_cpp_status()
    rows = []
    for m in load_catalog().models:
        advice = choose_strategy(
            inventory, arch=m.arch, n_params=m.n_params, n_layer=m.n_layer, n_embd=m.n_embd, vocab_size=m.vocab_size
        )
        pth_there = m.local_path(home).is_file() if m.embedded else m.is_downloaded(home)
        gguf = [
            {
                "quant": v.quant,
                "repo": v.repo,
                "file": v.file,
                "size_bytes": v.size_bytes,
                "size_exact": v.size_exact,
                "inferred": v.inferred,
                "downloaded": m.gguf_is_downloaded(v, home),
                "path": str(v.local_path(home)),
            }
            for v in m.gguf
        ]
        if m.embedded:
            auto = {"format": "pth", "quant": None, "reason": "embedded in WePrompt", "fits": advice.fits,
                    "fit_reason": advice.reason}
        else:
            choice = auto_format(inventory, llama, m)
            auto = {"format": choice.format, "quant": choice.quant, "reason": choice.reason,
                    "fits": advice.fits, "fit_reason": advice.reason}
            if choice.format == "gguf":
                variant = m.find_gguf(choice.quant or "")
                assert variant is not None
                auto["fits"], auto["fit_reason"] = gguf_fit(variant, inventory)
        rows.append(
            {
                "name": m.name,
                "title": m.title,
                "arch": m.arch,
                "params": m.n_params,
                "size_bytes": m.size_bytes,
                "size_exact": m.size_exact,
                "repo": m.repo,
                "file": m.file,
                "downloaded": pth_there or any(g["downloaded"] for g in gguf),
                "pth_downloaded": pth_there,
                "path": str(m.local_path(home)),
                "memory": m.memory,
                "fits": advice.fits,
                "strategy": advice.strategy,
                "reason": advice.reason,
                "gguf": gguf,
                "auto": auto,
            }
        )
    return rows


def _size(n: int, exact: bool) -> str:
    return ("" if exact else "~") + _gb(n)


@models_app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the catalog: size, GGUF builds, what is downloaded, and what fits this machine."""
    rows = model_rows(Context.create().home)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="RWKV models (weprompt models pull NAME [--format pth|gguf] [--quant q8_0])")
    for col in ("name", "arch", "params", "size", "fp16 needs", "have", "fits", "auto"):
        table.add_column(col, justify="right" if col in ("params", "size", "fp16 needs") else "left",
                         no_wrap=True)
    inferred = False
    for r in rows:
        auto = r["auto"]
        if not auto["fits"]:
            shown = "-"
        elif auto["format"] == "gguf":
            shown = f"gguf {auto['quant']}"
        else:
            shown = r["strategy"]
        table.add_row(
            r["name"],
            r["arch"],
            _params(r["params"]),
            _size(r["size_bytes"], r["size_exact"]),
            _gb(r["memory"]["fp16"]),
            "yes" if r["pth_downloaded"] else "no",
            "[green]yes[/]" if auto["fits"] else "[red]no[/]",
            shown,
        )
        for g in r["gguf"]:  # one indented row per GGUF build
            inferred = inferred or g["inferred"]
            name = f" └ gguf {g['quant']}" + ("?" if g["inferred"] else "")
            table.add_row(name, "", "", _size(g["size_bytes"], g["size_exact"]), "",
                          "yes" if g["downloaded"] else "no", "", "")
    Console().print(table)
    if inferred:
        _say("?: a GGUF file name the catalog infers from the uploader's naming (no listing showed it)")
    for reason in sorted({r["auto"]["reason"] for r in rows if r["auto"]["format"] == "gguf"}):
        _say(f"auto: {reason}")


@models_app.command("show")
def show(
    name: str = typer.Argument(..., help="Catalog name, e.g. g1-1.5b."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one catalog model: what it is, its files, its chat format and the decoding it starts from."""
    from weprompt_cli.chat.formats import get_format
    from weprompt_cli.chat.params import effective_params, family_defaults
    from weprompt_cli.models.catalog import load_catalog

    home = Context.create().home
    entry = load_catalog().get(name)
    fmt = get_format(entry.chat_format)
    family = family_defaults(fmt)
    defaults = effective_params(None, None, None, None, family=family).to_dict()
    defaults.pop("seed", None)
    files: list[dict[str, Any]] = [
        {"format": "pth", "file": entry.file or entry.package_file, "size": entry.size_bytes,
         "downloaded": entry.local_path(home).is_file()}
    ] + [{"format": "gguf", "quant": v.quant, "file": v.file, "size": v.size_bytes,
          "downloaded": v.local_path(home).is_file()} for v in entry.gguf]
    data: dict[str, Any] = {
        "name": entry.name,
        "title": entry.title,
        "arch": entry.arch,
        "params": entry.n_params,
        "layers": entry.n_layer,
        "embedding": entry.n_embd,
        "vocab_size": entry.vocab_size,
        "chat_format": fmt.name,
        "thinking": fmt.thinking,
        "decoding": defaults,
        "decoding_source": "the model family's published decoding" if family else "WePrompt's defaults",
        "files": files,
    }
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"{entry.name}: {entry.title}")
    typer.echo(f"  {entry.arch} · {_params(entry.n_params)} parameters · {entry.n_layer} x {entry.n_embd} · "
               f"vocabulary {entry.vocab_size}")
    typer.echo(f"  chat format {fmt.name}" + (" (thinks: --think off|on|bit|lot, off by default)" if fmt.thinking else ""))
    typer.echo(f"  decoding ({data['decoding_source']}; config, persona, session and flags override it):")
    typer.echo("    " + " · ".join(f"{k} {v}" for k, v in defaults.items()))
    for f in files:
        kind = f["format"] + (f" {f['quant']}" if f.get("quant") else "")
        typer.echo(f"  {kind:<12} {f['file']} ({_gb(f['size'])}){' · downloaded' if f['downloaded'] else ''}")


@models_app.command("pull")
def pull(
    name: str = typer.Argument(..., help="Catalog name, e.g. g1-1.5b (see 'weprompt models list')."),
    fmt: Optional[str] = typer.Option(
        None, "--format", help="pth (rwkv package) or gguf (llama.cpp). Default: GGUF Q8_0 on a machine without a "
        "usable GPU when llama-cpp-python is installed and the model has one, else the .pth."
    ),
    quant: Optional[str] = typer.Option(None, "--quant", help="Which GGUF build, e.g. q8_0 (implies --format gguf)."),
) -> None:
    """Download a catalog model (.pth or a GGUF build, and the tokenizer it needs) into <home>/models; resumes."""
    from weprompt_cli.models.pull import pull_model

    result = pull_model(name, home=Context.create().home, say=_say, fmt=fmt, quant=quant)
    if result.already_present:
        typer.echo(f"{name} is already downloaded: {result.path}")
    else:
        typer.echo(f"{name}: {result.path}")
        if result.tokenizer_path is not None:
            typer.echo(f"tokenizer: {result.tokenizer_path}")


@models_app.command("rm")
def rm(
    name: str = typer.Argument(..., help="Catalog name of a downloaded model."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Only this format: pth or gguf (default: every file)."),
    quant: Optional[str] = typer.Option(None, "--quant", help="Only this GGUF build, e.g. q8_0."),
) -> None:
    """Delete a downloaded model (its .pth and GGUF builds), its tokenizer and any partial download."""
    from weprompt_cli.models.pull import remove_model

    for path in remove_model(name, home=Context.create().home, fmt=fmt, quant=quant):
        typer.echo(f"removed {path}")


@models_app.command("convert")
def convert(
    model: str = typer.Argument(..., help="Catalog name or path of a checkpoint (.pth)."),
    to: Optional[str] = typer.Option(None, "--to", help="'gguf': write a GGUF file for the llama.cpp backend."),
    quant: str = typer.Option("q8_0", "--quant", help="GGUF weights: f32, f16, q8_0, q5_1 or q4_0."),
    strategy: Optional[str] = typer.Option(
        None, "--strategy", "-s", help="RWKV-4/5/6 for the rwkv package: the strategy to convert for, e.g. 'cuda fp16i8'."
    ),
    output: Optional[Path] = typer.Option(None, "--output", "--out", "-o", help="Where to write (default: beside the source)."),
) -> None:
    """Convert a checkpoint: to GGUF (--to gguf --quant q8_0; RWKV-7 and RWKV-6) for llama.cpp, or for one
    rwkv-package strategy (--strategy; RWKV-4/5/6) so it loads faster."""
    from weprompt_cli.errors import UsageError

    home = Context.create().home
    if to is not None:
        if to.lower() != "gguf":
            raise UsageError(f"unknown target format {to!r}", hint="--to gguf, or --strategy S for the rwkv package")
        if strategy is not None:
            raise UsageError("--to gguf and --strategy do not go together (a GGUF runs with any llama.cpp strategy)")
        _convert_gguf(home, model, quant, output)
        return
    if strategy is None:
        raise UsageError("say what to convert to", hint="--to gguf --quant q8_0 (llama.cpp), or --strategy 'cuda fp16i8'")
    from weprompt_cli.models.convert import convert_model

    _say(f"converting {model} for {strategy!r} (this loads the whole model once)")
    result = convert_model(model, strategy, output, home=home)
    typer.echo(str(result.output))
    _say(f"load it with: --model {result.output} --strategy '{result.strategy}'")


def _convert_gguf(home: Home, model: str, quant: str, output: Path | None) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from weprompt_cli.models.gguf_convert import convert_to_gguf
    from weprompt_cli.models.resolve import resolve_model

    from weprompt_cli.models.gguf_convert import default_gguf_output

    resolved = resolve_model(model, home=home)
    source = resolved.path
    if output is None and resolved.is_demo:
        output = home.models / default_gguf_output(source, quant.lower()).name  # not into the installed package
        output.parent.mkdir(parents=True, exist_ok=True)
    _say(f"converting {source.name} to GGUF {quant}")
    console = Console(stderr=True)
    with Progress(TextColumn("writing"), BarColumn(), MofNCompleteColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task("gguf", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = convert_to_gguf(source, output, quant=quant, progress=progress)
    typer.echo(str(result.output))
    size = _gb(result.file_size)
    _say(f"{result.quant} · {size} · tokenizer {result.tokenizer} · {result.seconds:.1f} s; "
         f"chat with it: weprompt chat --model {result.output}")

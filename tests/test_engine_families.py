"""Every RWKV family loads through the real rwkv.model.RWKV and answers a turn.

`rwkv.model` fixes its family at import, so each family runs in its own process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from checkpoints import tiny_models, tiny_models_dir  # noqa: F401  (fixtures)
from helpers import run_python_many

FAMILY_SCRIPT = """
import json
from helpers import engine_tokens, multi_turn_state_gap, one_turn, pipeline_tokens
from weprompt_cli.engine import load_engine
from weprompt_cli.engine.runtime import loaded_family

engine = load_engine({path!r}, "cpu fp32")
out = {{"turn": one_turn(engine), "family": loaded_family(), "state": multi_turn_state_gap(engine)}}
if {parity!r}:
    prompt = "User: How do I count rows?\\n\\nAssistant:"
    out["engine"] = engine_tokens(engine, prompt, 16)
    out["pipeline"] = pipeline_tokens(engine, prompt, 16)
    out["engine_pen"] = engine_tokens(engine, prompt, 16, presence=1.5, frequency=1.0, decay=0.95)
    out["pipeline_pen"] = pipeline_tokens(engine, prompt, 16, presence=1.5, frequency=1.0, decay=0.95)
print(json.dumps(out))
"""


SUBPROCESS_FAMILIES = ("v4", "v5.2", "v6")


@pytest.fixture(scope="module")
def family_runs(tiny_models: dict[str, Path]) -> dict:
    """One process per family, all started at once (each pays the torch import and JIT compile)."""
    return run_python_many(
        {arch: FAMILY_SCRIPT.format(path=str(tiny_models[arch]), parity=arch == "v4") for arch in SUBPROCESS_FAMILIES}
    )


@pytest.mark.parametrize("arch", SUBPROCESS_FAMILIES)
def test_family_loads_answers_a_turn_and_keeps_state_consistent(family_runs: dict, arch: str) -> None:
    out = family_runs[arch]
    assert isinstance(out, dict), out
    turn = out["turn"]
    assert out["family"] == "v4-v6"
    assert turn["arch"] == arch and turn["format"] == "world"
    assert turn["tokens"] and turn["reason"] in ("stop", "length")
    assert "".join(turn["pieces"]) == turn["text"]
    assert turn["logits_dtype"] == "torch.float32"
    state = out["state"]
    assert state["max_gap"] <= 1e-4 * max(1.0, state["scale"]), state
    assert "length" in state["reasons"]
    assert state["moved"] > 0.01  # the live state really advanced
    if arch == "v4":
        assert out["engine"] == out["pipeline"] and len(out["engine"]) == 16
        assert out["engine_pen"] == out["pipeline_pen"]
        assert out["engine_pen"] != out["engine"]  # the penalties changed the picks

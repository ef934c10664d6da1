"""Write a trained RWKV7 as the `.pth` layout that `rwkv.model.RWKV` loads with RWKV_V7_ON=1."""

from __future__ import annotations

from pathlib import Path

import torch

from training.model import RWKV7


def export_state_dict(model: RWKV7, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The checkpoint dict: the module's own names and shapes (they are the package's), cast to dtype."""
    return {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}


def export(model: RWKV7, path: Path, dtype: torch.dtype = torch.float32) -> Path:
    """Save the model to `path` (a `.pth` file, plain tensors only so weights_only loading works)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(export_state_dict(model, dtype), tmp)
    tmp.replace(path)
    return path

"""An optimizer's state as plain arrays + JSON, for ``.npz`` checkpoints (no pickle)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["check_optimizer_attrs", "optimizer_arrays", "restore_optimizer"]


def optimizer_arrays(
    opt: torch.optim.Optimizer,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``opt``'s state: tensors as ``optim/<param>/<key>`` arrays, the rest JSON.

    Returns the arrays and the attributes (``optim_param_groups``,
    ``optim_scalars``) that :func:`restore_optimizer` reads back.
    """
    sd = opt.state_dict()
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                arrays[f"optim/{idx}/{key}"] = val.detach().cpu().numpy()
            else:
                scalars[f"{idx}/{key}"] = val
    return arrays, {"optim_param_groups": sd["param_groups"], "optim_scalars": scalars}


def check_optimizer_attrs(attrs: dict[str, Any]) -> None:
    """KeyError or ValueError when ``attrs`` lack a readable optimizer state."""
    if not isinstance(attrs["optim_scalars"], dict) or not isinstance(
        attrs["optim_param_groups"], list
    ):
        raise ValueError("the optimizer state is not an object and a list")


def restore_optimizer(
    opt: torch.optim.Optimizer, arrays: dict[str, Any], attrs: dict[str, Any]
) -> None:
    """Load the state :func:`optimizer_arrays` wrote into ``opt``.

    Raises KeyError, TypeError, ValueError or RuntimeError (the caller names
    the file) when the state does not fit ``opt``.
    """
    state: dict[int, dict[str, Any]] = {}
    for key, val in arrays.items():
        if key.startswith("optim/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = torch.from_numpy(np.array(val))
    for key, val in attrs["optim_scalars"].items():
        idx, name = key.split("/", 1)
        state.setdefault(int(idx), {})[name] = val
    groups = [dict(g) for g in attrs["optim_param_groups"]]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})

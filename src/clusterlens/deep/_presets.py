"""Named IIC configurations (``IIC(preset=...)``), e.g. the authors' MNIST setup."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from clusterlens.exceptions import InvalidParameterError

__all__ = ["DEFAULTS", "PRESETS", "Preset", "get_preset"]

#: IIC's own values of the parameters a preset may set (used when neither the
#: caller nor the preset gives one).
DEFAULTS: dict[str, Any] = {
    "n_clusters_over": 50,
    "n_heads": 5,
    "n_repeats": 4,
    "batch_size": 32,
    "lr": 2e-3,
    "width": 0.25,
    "kernel_size": 3,
}


@dataclass(frozen=True)
class Preset:
    """A named IIC configuration.

    Parameters
    ----------
    name : str
        What ``preset=`` and ``--preset`` take.
    description : str
        One line: where the values come from.
    params : dict
        IIC parameters (keys of :data:`DEFAULTS`); an explicit argument wins.
    transforms : dict
        :func:`~clusterlens.deep.default_transforms` keyword arguments, applied
        to the defaults for the training images' size when ``transforms`` is
        not given.
    """

    name: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)
    transforms: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "ji2019-mnist",
            "the authors' MNIST run (Ji et al., ICCV 2019; xu-ji/IIC "
            "cluster_greyscale_twohead.py): net B at full width with 5x5 "
            "convolutions, 5 sub-heads, no overclustering head (their head-A "
            "phase trains the k=10 head), batch 140 x 5 repeats, Adam lr 1e-4; "
            "first view a random 20/28 crop half the time (centred otherwise), "
            "second view a random 16/20/24 crop of the image rotated by up to 25 "
            "degrees half the time, brightness/contrast jitter 0.4",
            params={
                "n_clusters_over": 0,
                "n_heads": 5,
                "n_repeats": 5,
                "batch_size": 140,
                "lr": 1e-4,
                "width": 1.0,
                "kernel_size": 5,
            },
            transforms={
                "rotation_p": 0.5,
                "rotate_image": True,
                "first_random_p": 0.5,
            },
        ),
    )
}


def get_preset(name: str | None, owner: str = "IIC") -> Preset | None:
    """The preset called ``name`` (``None`` for none); a clear error otherwise."""
    if name is None:
        return None
    if isinstance(name, str) and name in PRESETS:
        return PRESETS[name]
    close = difflib.get_close_matches(str(name), list(PRESETS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise InvalidParameterError(
        f"Unknown preset {name!r} for {owner}.{hint} Available: "
        f"{', '.join(PRESETS)} (or None for {owner}'s own defaults)."
    )

"""A small variational autoencoder over pixels: its latent means as features.

The reference project's other baseline for clustering images: a VAE
(Kingma & Welling, 2014) trained from scratch on the images themselves, whose
encoder means are clustered with k-means. Here: a multilayer perceptron
encoder ``D -> h1 -> h2 -> (mu, log var)`` and a mirrored decoder with a
sigmoid output, trained with the Bernoulli (binary cross-entropy)
reconstruction loss plus the KL divergence to N(0, I), Adam, mini-batches.
Inputs are pixels in [0, 1] (:func:`clusterlens.features.pixel_features`).

Cost per epoch: about ``6 n (D h1 + h1 h2 + h2 z)`` flops per direction
(forward and backward of encoder and decoder), e.g. ~12 GFLOP for 10,000
28x28 digits with ``h = (512, 256)``: about a second on two cores.
The model saves as ``.npz`` (weights) + ``.json`` (sizes, loss history),
never pickled; the same seed and thread count give the same features.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterlens.exceptions import DataValidationError
from clusterlens.utils._optional import import_optional
from clusterlens.utils._progress import progress
from clusterlens.utils.validation import check_int, check_real

__all__ = ["VaeModel", "fit_vae"]

FORMAT = "clusterlens.vae"
FORMAT_VERSION = 1


def _torch() -> Any:
    # OpenMP threads spinning while they wait make small torch steps ~10x
    # slower on a busy machine (see clusterlens.deep); no result changes.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return import_optional("torch", extra="deep", feature="The VAE features")


def _build(n_features: int, hidden: tuple[int, ...], latent: int) -> Any:
    torch = _torch()
    nn = torch.nn

    class _Vae(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            enc: list[Any] = []
            d = n_features
            for h in hidden:
                enc += [nn.Linear(d, h), nn.ReLU()]
                d = h
            self.encoder = nn.Sequential(*enc)
            self.mu = nn.Linear(d, latent)
            self.logvar = nn.Linear(d, latent)
            dec: list[Any] = []
            d = latent
            for h in reversed(hidden):
                dec += [nn.Linear(d, h), nn.ReLU()]
                d = h
            dec.append(nn.Linear(d, n_features))
            self.decoder = nn.Sequential(*dec)

        def encode(self, x: Any) -> tuple[Any, Any]:
            h = self.encoder(x)
            return self.mu(h), self.logvar(h)

        def forward(self, x: Any, eps: Any) -> tuple[Any, Any, Any]:
            mu, logvar = self.encode(x)
            z = mu + eps * torch.exp(0.5 * logvar)
            return self.decoder(z), mu, logvar

    return _Vae()


class VaeModel:
    """A trained VAE: :meth:`transform` gives each row's latent mean.

    Attributes
    ----------
    n_features, latent : int
    hidden : tuple of int
    history : list of dict
        Per epoch: ``epoch``, ``loss`` (mean per item: reconstruction + KL),
        ``reconstruction``, ``kl``, ``seconds``.
    """

    def __init__(
        self,
        n_features: int,
        latent: int,
        hidden: tuple[int, ...],
        state: dict[str, npt.NDArray[np.float32]],
        history: list[dict[str, float]] | None = None,
    ) -> None:
        self.n_features = int(n_features)
        self.latent = int(latent)
        self.hidden = tuple(int(h) for h in hidden)
        self.state = state
        self.history = list(history or [])

    def _module(self) -> Any:
        torch = _torch()
        net = _build(self.n_features, self.hidden, self.latent)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in self.state.items()})
        return net.eval()

    def transform(self, X: npt.ArrayLike, batch_size: int = 4096) -> npt.NDArray[Any]:
        """Latent means (n, latent), float32, of rows of pixels in [0, 1]."""
        torch = _torch()
        Xa = _check_pixels(X, "X")
        if Xa.shape[1] != self.n_features:
            raise DataValidationError(
                f"X has {Xa.shape[1]} features, but the VAE was trained on "
                f"{self.n_features}: use images of the same size and mode."
            )
        net = self._module()
        out = np.empty((Xa.shape[0], self.latent), np.float32)
        with torch.no_grad():
            for a in range(0, Xa.shape[0], batch_size):
                mu, _ = net.encode(torch.from_numpy(Xa[a : a + batch_size]))
                out[a : a + batch_size] = mu.numpy()
        return out

    def save(self, path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``path.npz`` (weights) and ``path.json`` (sizes, history)."""
        from clusterlens.utils._fs import atomic_write_bytes, atomic_write_text

        p = Path(os.fspath(path))
        p.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **self.state)  # type: ignore[arg-type]
        npz, js = p.with_suffix(".npz"), p.with_suffix(".json")
        atomic_write_bytes(npz, buf.getvalue())
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "n_features": self.n_features,
            "latent": self.latent,
            "hidden": list(self.hidden),
            "history": self.history,
        }
        atomic_write_text(js, json.dumps(meta, indent=1))
        return npz, js

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VaeModel:
        """Read a model written by :meth:`save`."""
        from clusterlens.io._safe import invalid_file, load_npz, read_json

        p = Path(os.fspath(path))
        fix = "save the model again with VaeModel.save"
        meta = read_json(p.with_suffix(".json"), what="VAE model description", fix=fix)
        if meta.get("format") != FORMAT:
            raise DataValidationError(f"{p.with_suffix('.json')} is not a VAE model.")
        state = load_npz(p.with_suffix(".npz"), what="VAE model", fix=fix)
        try:
            return cls(
                meta["n_features"],
                meta["latent"],
                tuple(meta["hidden"]),
                state,
                meta.get("history"),
            )
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise DataValidationError(
                invalid_file(p.with_suffix(".npz"), "VAE model", str(e), fix)
            ) from e


def _check_pixels(X: npt.ArrayLike, name: str) -> npt.NDArray[np.float32]:
    Xa = np.ascontiguousarray(X, dtype=np.float32)
    if Xa.ndim != 2 or Xa.shape[0] < 1 or Xa.shape[1] < 1:
        raise DataValidationError(
            f"{name} must be a 2-D array of pixel rows; got shape {Xa.shape}."
        )
    if not np.isfinite(Xa).all():
        raise DataValidationError(f"{name} contains NaN or infinity.")
    if Xa.min() < 0.0 or Xa.max() > 1.0:
        raise DataValidationError(
            f"{name} must hold pixels in [0, 1] (pixel_features scales uint8 "
            f"images); got values in [{Xa.min():g}, {Xa.max():g}]."
        )
    return Xa


def fit_vae(
    X: npt.ArrayLike,
    *,
    latent: int = 16,
    hidden: tuple[int, ...] = (512, 256),
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 1e-3,
    random_state: int = 0,
    verbose: int = 0,
) -> VaeModel:
    """Train a VAE on rows of pixels in [0, 1]; returns the model.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    latent : int, default=16
        Size of the latent space (the features).
    hidden : tuple of int, default=(512, 256)
        Hidden layer widths of the encoder (the decoder mirrors them).
    epochs, batch_size : int
    lr : float, default=1e-3
        Adam's learning rate.
    random_state : int, default=0
        Seeds the weights, the batch order and the sampling noise.
    verbose : int, default=0
        1 shows a progress bar over epochs with the loss.
    """
    torch = _torch()
    Xa = _check_pixels(X, "X")
    latent = int(check_int(latent, "latent", "fit_vae", low=1) or 1)
    epochs = int(check_int(epochs, "epochs", "fit_vae", low=1) or 1)
    batch_size = int(check_int(batch_size, "batch_size", "fit_vae", low=1) or 1)
    lr = check_real(lr, "lr", "fit_vae", low=0.0, closed="right")
    hidden = tuple(int(check_int(h, "hidden", "fit_vae", low=1) or 1) for h in hidden)
    seed = int(check_int(random_state, "random_state", "fit_vae", low=0) or 0)
    n, d = Xa.shape
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = _build(d, hidden, latent)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    data = torch.from_numpy(Xa)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    history: list[dict[str, float]] = []
    bar = progress(total=epochs, desc="VAE", unit="epoch", verbose=verbose)
    try:
        for ep in range(epochs):
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=gen)
            tot = rec_tot = kl_tot = 0.0
            for a in range(0, n, batch_size):
                xb = data[order[a : a + batch_size]]
                eps = torch.randn(xb.shape[0], latent, generator=gen)
                logits, mu, logvar = net(xb, eps)
                rec = bce(logits, xb, reduction="sum")
                kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
                loss = (rec + kl) / xb.shape[0]
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * xb.shape[0]
                rec_tot += float(rec.detach())
                kl_tot += float(kl.detach())
            if not np.isfinite(tot):
                raise DataValidationError(
                    "The VAE's loss became NaN or infinite; lower the learning rate."
                )
            history.append(
                {
                    "epoch": ep + 1,
                    "loss": tot / n,
                    "reconstruction": rec_tot / n,
                    "kl": kl_tot / n,
                    "seconds": time.perf_counter() - t0,
                }
            )
            bar.set_postfix_str(f"loss={tot / n:.4g}", refresh=False)
            bar.update(1)
    finally:
        bar.close()
    state = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    return VaeModel(d, latent, hidden, state, history)

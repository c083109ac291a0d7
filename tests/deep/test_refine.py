"""Edge-aware refinement of cluster maps: the guided filter against a direct
computation, a constant region stays constant, a blurred boundary moves to the
image's edge (issue #21)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from clusterlens.deep import guided_filter, refine_segmentation  # noqa: E402
from clusterlens.deep._refine import box_mean  # noqa: E402
from clusterlens.exceptions import DataValidationError  # noqa: E402


def test_box_mean_equals_loops_with_clipped_windows(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    x = rng.normal(size=(1, 2, 7, 9))
    r = 2
    want = np.empty_like(x)
    for i in range(7):
        for j in range(9):
            win = x[..., max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1]
            want[..., i, j] = win.mean(axis=(-2, -1))
    got = box_mean(torch.from_numpy(x), r).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_guided_filter_is_the_identity_on_its_own_guide_when_eps_is_tiny(
    global_random_seed,
):
    """With eps -> 0 the local linear model fits the guide exactly (a = 1,
    b = 0 in every window with variance): filtering the guide returns it."""
    rng = np.random.default_rng(global_random_seed)
    g = torch.from_numpy(rng.uniform(0, 1, (1, 1, 20, 24)))
    out = guided_filter(g, g, 3, 1e-12)
    torch.testing.assert_close(out, g, rtol=1e-6, atol=1e-6)


def _two_colours(h: int, w: int, edge: int):
    img = np.empty((h, w, 3), np.uint8)
    img[:, :edge] = (200, 60, 40)  # dark red: grey level 100
    img[:, edge:] = (240, 240, 240)  # near white: 240
    return img


@pytest.mark.parametrize("offset", [-8, -3, 3, 8])
def test_boundary_moves_to_the_edge_and_constant_regions_stay(offset):
    """A boundary 8 pixels off (an upsampled stride-8 map's blur) lands on
    the image's edge: the window radius is 0.09 x 240 = 22 pixels, and the
    filter moves boundaries by up to about a third of it."""
    h, w, edge = 240, 320, 190
    img = _two_colours(h, w, edge)
    labels = np.zeros((h, w), np.int64)
    labels[:, edge - offset :] = 1
    out = refine_segmentation(labels, img, 2)
    truth = np.broadcast_to(np.arange(w) >= edge, (h, w))
    wrong = int((out != truth).sum())
    assert wrong == 0, f"{wrong} pixels off the edge after refinement (offset {offset})"
    # one cluster over a region stays that cluster, whatever the image
    flat = np.zeros((h, w), np.int64)
    assert (refine_segmentation(flat + 2, img, 3) == 2).all()
    noisy = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    assert (refine_segmentation(flat + 1, noisy, 3) == 1).all()


def test_refine_refuses_an_image_of_another_size():
    with pytest.raises(DataValidationError, match="same height and width"):
        refine_segmentation(np.zeros((4, 5), int), np.zeros((5, 4, 3), np.uint8), 2)

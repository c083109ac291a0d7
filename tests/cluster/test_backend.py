"""Where the passes run plugs into the one Lloyd loop of each mode (issue #22)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from clusterlens.cluster import (
    Backend,
    ExactPasses,
    LargeKPasses,
    Session,
    get_backend,
    kmeans,
)
from clusterlens.cluster._local import LocalBackend
from clusterlens.exceptions import InvalidParameterError


def _blobs(seed, n=3000, d=8, k=6):
    rng = np.random.default_rng(seed)
    C = rng.standard_normal((k, d)) * 6
    return (C[rng.integers(k, size=n)] + rng.standard_normal((n, d))).astype(np.float32)


class _CountingSession(Session):
    """The local session, counting the passes each mode asks for."""

    def __init__(self, inner, counts):
        self.inner, self.counts = inner, counts

    def mean_var(self):
        self.counts["mean_var"] += 1
        return self.inner.mean_var()

    def exact(self, engine, sample_weight, n_clusters):
        passes = self.inner.exact(engine, sample_weight, n_clusters)
        step = passes.step

        def counted(*a, **kw):
            self.counts["exact"] += 1
            return step(*a, **kw)

        passes.step = counted
        return passes

    def large(self, shift):
        passes = self.inner.large(shift)
        for name in ("index_pass", "candidate_pass"):
            fn = getattr(passes, name)

            def counted(*a, _fn=fn, _name=name, **kw):
                self.counts[_name] += 1
                return _fn(*a, **kw)

            setattr(passes, name, counted)
        return passes


class CountingBackend(Backend):
    """A backend object passed to kmeans: the local passes, counted."""

    name = "counting"

    def __init__(self):
        self.counts = dict.fromkeys(
            ["mean_var", "exact", "index_pass", "candidate_pass"], 0
        )

    @contextlib.contextmanager
    def session(self, source, X):
        with LocalBackend().session(source, X) as inner:
            yield _CountingSession(inner, self.counts)


@pytest.mark.parametrize("mode", ["exact", "large"])
def test_a_backend_object_answers_the_passes_of_the_one_loop(global_random_seed, mode):
    X = _blobs(global_random_seed)
    kw = dict(random_state=global_random_seed, mode=mode, max_iter=12)
    ref = kmeans(X, 24, **kw)
    bk = CountingBackend()
    res = kmeans(X, 24, backend=bk, **kw)
    np.testing.assert_array_equal(res.labels, ref.labels)
    np.testing.assert_array_equal(res.centers, ref.centers)
    assert res.inertia == ref.inertia
    assert len(res.history) == len(ref.history)
    assert res.history == [
        {**h, "seconds": r["seconds"]}
        for h, r in zip(ref.history, res.history, strict=True)
    ]
    assert res.engine == "counting:" + ref.engine
    assert bk.counts["mean_var"] == 1
    if mode == "exact":
        assert bk.counts["exact"] == res.n_iter
    else:
        passes = [h["pass"] for h in res.history]
        assert bk.counts["index_pass"] == passes.count("index")
        assert bk.counts["candidate_pass"] == passes.count("candidates")


def test_backend_names_resolve_and_unknown_ones_are_refused():
    assert isinstance(get_backend("local"), LocalBackend)
    assert get_backend(None).name == "local"
    bk = CountingBackend()
    assert get_backend(bk) is bk
    with pytest.raises(InvalidParameterError, match="backend must be one of"):
        get_backend("dsak")


def test_dask_backend_registers_itself_by_name():
    pytest.importorskip("distributed")
    bk = get_backend("dask")
    assert bk.name == "dask"
    assert type(bk).__module__.startswith("clusterlens.distributed")


def test_the_protocol_is_abstract():
    for cls in (Backend, Session, ExactPasses, LargeKPasses):
        with pytest.raises(TypeError):
            cls()

"""Run fastdup or cleanvision on a folder; write its results as JSON.

Run with the peers' own virtual environment (fastdup pins numpy<2 and an old
scikit-learn, so it cannot share clusterlens's)::

    .venv-peers/bin/python benchmarks/_curate_peers.py fastdup FOLDER OUT.json
    .venv-peers/bin/python benchmarks/_curate_peers.py cleanvision FOLDER OUT.json
    .venv-peers/bin/python benchmarks/_curate_peers.py fastdup-sweep FOLDER OUT.json
    .venv-peers/bin/python benchmarks/_curate_peers.py cleanvision-sweep FOLDER OUT.json

``fastdup`` and ``cleanvision`` run the tool at its defaults, from the folder
to every result (the timed run). The ``-sweep`` modes are not timed: they
collect the scores the threshold sweeps need and a default run does not
report (fastdup: its similarity pairs down to 0.5 and every image's outlier
score; cleanvision: near-duplicate sets at other perceptual-hash sizes).
Files are keyed by their name inside FOLDER. Only the standard library and the
tools are imported here.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

# fastdup's telemetry (sentry) is off with this variable; there is no network
# here anyway, and run_sentry=False below keeps its C++ side quiet too.
os.environ.setdefault("SENTRY_OPT_OUT", "1")
# and FASTDUP_PRODUCTION skips its PyPI version check at import (a 2 s timeout)
os.environ.setdefault("FASTDUP_PRODUCTION", "1")


def _name(p: object) -> str:
    return Path(str(p)).name


def _fastdup(folder: str, *, sweep: bool) -> dict:
    import fastdup

    with tempfile.TemporaryDirectory(prefix="fastdup-") as work:
        fd = fastdup.create(work_dir=work, input_dir=folder)
        kw: dict = {"run_sentry": False, "verbose": False}
        if sweep:
            # every pair down to 0.5 and every image's outlier score
            kw.update(threshold=0.5, outlier_percentile=1.0)
        fd.run(**kw)
        sim = fd.similarity()
        pairs = (
            []
            if sim is None or sim.empty
            else [
                [_name(a), _name(b), float(s)]
                for a, b, s in zip(
                    sim["filename_from"],
                    sim["filename_to"],
                    sim["distance"],
                    strict=True,
                )
            ]
        )
        out = fd.outliers()
        outliers = (
            {}
            if out is None or out.empty
            else {
                _name(f): float(s)
                for f, s in zip(out["filename_outlier"], out["distance"], strict=True)
            }
        )
        res: dict = {
            "tool": "fastdup",
            "version": fastdup.__version__,
            "pairs": pairs,
            "outliers": outliers,
        }
        if sweep:
            return res
        cc = fd.connected_components()
        comp_df = cc[0] if isinstance(cc, tuple) else cc
        components: dict[str, int] = {}
        if comp_df is not None and not comp_df.empty:
            col = "component_id" if "component_id" in comp_df else "__id"
            components = {
                _name(f): int(c)
                for f, c in zip(comp_df["filename"], comp_df[col], strict=True)
            }
        st = fd.img_stats()
        keys = [k for k in ("blur", "mean", "stdv", "min", "max", "unique", "contrast")]
        stats = {
            _name(f): {k: float(st[k].iloc[i]) for k in keys if k in st}
            for i, f in enumerate(st["filename"])
        }
        invalid = [_name(f) for f in fd.invalid_instances().get("filename", [])]
        res.update(components=components, stats=stats, invalid=invalid)
        return res


def _cleanvision(folder: str, *, sweep: bool) -> dict:
    import cleanvision
    from cleanvision import Imagelab

    if sweep:
        near: dict[str, list[list[str]]] = {}
        for size in (4, 6, 8, 12, 16):
            lab = Imagelab(data_path=folder)
            lab.find_issues(
                {"near_duplicates": {"hash_type": "phash", "hash_size": size}},
                verbose=False,
            )
            near[str(size)] = [
                [_name(f) for f in s] for s in lab.info["near_duplicates"]["sets"]
            ]
        return {"tool": "cleanvision", "version": cleanvision.__version__, "near": near}
    lab = Imagelab(data_path=folder)
    lab.find_issues(verbose=False)
    df = lab.issues
    cols = [c for c in df.columns if c.endswith("_score") or c.startswith("is_")]
    table = {
        _name(f): {
            c: (bool(v) if c.startswith("is_") else float(v)) for c, v in row.items()
        }
        for f, row in zip(df.index, df[cols].to_dict("records"), strict=True)
    }
    return {
        "tool": "cleanvision",
        "version": cleanvision.__version__,
        "issues": table,
        "exact_sets": [
            [_name(f) for f in s] for s in lab.info["exact_duplicates"]["sets"]
        ],
        "near_sets": [
            [_name(f) for f in s] for s in lab.info["near_duplicates"]["sets"]
        ],
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    mode, folder, out = argv
    t0 = time.perf_counter()
    tool, _, sweep = mode.partition("-")
    if tool == "fastdup":
        res = _fastdup(folder, sweep=bool(sweep))
    elif tool == "cleanvision":
        res = _cleanvision(folder, sweep=bool(sweep))
    else:
        print(f"unknown tool {tool!r}: fastdup or cleanvision", file=sys.stderr)
        return 2
    res["seconds_in_process"] = time.perf_counter() - t0
    Path(out).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``clusterlens topics``: LDA over an image workspace's visual-word counts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from clusterlens.exceptions import DataValidationError
from clusterlens.io._results import write_results, write_run
from clusterlens.io._safe import invalid_file, load_npy, load_sparse, read_json
from clusterlens.io._workspace import Workspace
from clusterlens.pipelines.cluster_images import base_columns, scores_if_labelled
from clusterlens.utils._fs import atomic_write_text

__all__ = ["run_topics"]


def run_topics(
    ws: Workspace,
    stage: str | os.PathLike[str],
    *,
    n_topics: int = 20,
    bow_dir: str | os.PathLike[str] | None = None,
    spatial: int = 0,
    learning_method: str = "online",
    max_iter: int = 20,
    batch_size: int = 128,
    n_top: int = 10,
    random_state: int = 0,
    report: bool = True,
    command: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit LDA on image (or spatial-cell) documents; image cluster = top topic.

    Writes ``results.parquet`` (``index``, ``item_id``, ``label``, ``topic``,
    ``topic_prob``, ``cluster`` = ``topic``), ``doc_topic.npy`` (per image),
    ``topic_word.npy``, ``divergence.npy`` (symmetric KL between topics),
    ``topics.json`` (top words and top images per topic), ``run.json`` and
    ``report.html``.
    """
    from clusterlens.topics import aggregate_cells, fit_lda, symmetric_kl, top_words
    from clusterlens.vocab import spatial_cells

    stage = Path(os.fspath(stage))
    bdir = Path(os.fspath(bow_dir)) if bow_dir is not None else ws.root / "bow"
    if not (bdir / "counts.npz").is_file():
        raise DataValidationError(
            f"{str(bdir)!r} holds no bag of words (counts.npz). Run: clusterlens bow WS"
        )
    rebow = "re-create it with `clusterlens bow WS`"
    counts = load_sparse(
        bdir / "counts.npz", what="bag-of-words count matrix", fix=rebow
    )
    if counts.data.size and (counts.data < 0).any():
        raise DataValidationError(
            invalid_file(
                bdir / "counts.npz",
                "bag-of-words count matrix",
                f"{int((counts.data < 0).sum())} count(s) are negative",
                rebow,
            )
        )
    if counts.shape[0] != len(ws):
        raise DataValidationError(
            f"The bag of words in {str(bdir)!r} has {counts.shape[0]} rows but the "
            f"workspace has {len(ws)} items. Re-run clusterlens bow."
        )
    n_words = counts.shape[1]
    t0 = time.perf_counter()
    if spatial:
        bow_run = read_json(bdir / "run.json", what="bag-of-words run file", fix=rebow)
        sift_dir = bow_run.get("parameters", {}).get("sift")
        if not isinstance(sift_dir, str):
            raise DataValidationError(
                invalid_file(
                    bdir / "run.json",
                    "bag-of-words run file",
                    "it does not name the SIFT folder (parameters.sift)",
                    rebow,
                )
            )
        sift_dir = Path(sift_dir)
        resift = "re-create it with `clusterlens features sift WS`"
        offsets = load_npy(
            sift_dir / "offsets.npy",
            what="SIFT offsets file",
            fix=resift,
            ndim=1,
            kinds="iu",
        )
        kp = load_npy(
            sift_dir / "keypoints.npy",
            what="SIFT keypoints file",
            fix=resift,
            mmap=True,
            ndim=2,
            kinds="f",
        )
        words = load_npy(
            bdir / "words.npy", what="visual-word file", fix=rebow, ndim=1, kinds="iu"
        )
        if (
            offsets.shape[0] != len(ws) + 1
            or int(offsets[-1]) != words.shape[0]
            or kp.shape != (words.shape[0], 4)
        ):
            raise DataValidationError(
                f"The SIFT features in {str(sift_dir)!r} ({offsets.shape[0] - 1} "
                f"items, {kp.shape[0]} keypoints) do not match the bag of words in "
                f"{str(bdir)!r} ({len(ws)} items, {words.shape[0]} words). Re-run "
                "clusterlens features sift WS, then clusterlens bow WS."
            )
        docs, item = spatial_cells(words, offsets, kp[:, :2], n_words, spatial)
        res = fit_lda(
            docs,
            n_topics,
            learning_method=learning_method,
            max_iter=max_iter,
            batch_size=batch_size,
            random_state=random_state,
        )
        weight = np.asarray(docs.sum(axis=1)).ravel()
        doc_topic = aggregate_cells(res.doc_topic, weight, item, len(ws))
    else:
        res = fit_lda(
            counts,
            n_topics,
            learning_method=learning_method,
            max_iter=max_iter,
            batch_size=batch_size,
            random_state=random_state,
        )
        doc_topic = res.doc_topic
    seconds = time.perf_counter() - t0
    topic = doc_topic.argmax(axis=1).astype(np.int64)
    prob = doc_topic[np.arange(len(ws)), topic]
    div = symmetric_kl(res.topic_word)
    tw = top_words(res.topic_word, n_top)
    order = np.argsort(-doc_topic, axis=0, kind="stable")[: min(n_top, len(ws))].T
    np.save(stage / "doc_topic.npy", doc_topic.astype(np.float32))
    np.save(stage / "topic_word.npy", res.topic_word.astype(np.float32))
    np.save(stage / "divergence.npy", div)
    write_results(
        stage / "results.parquet",
        {**base_columns(ws), "topic": topic, "topic_prob": prob, "cluster": topic},
    )
    iu = np.triu_indices(n_topics, 1)
    sizes = np.bincount(topic, minlength=n_topics)
    topics_info = [
        {
            "topic": t,
            "size": int(sizes[t]),
            "top_words": tw[t].tolist(),
            "top_word_probs": res.topic_word[t, tw[t]].round(6).tolist(),
            "top_items": order[t].tolist(),
            "top_item_ids": [str(ws.items["item_id"][i]) for i in order[t]],
        }
        for t in range(n_topics)
    ]
    atomic_write_text(stage / "topics.json", json.dumps(topics_info, indent=1))
    scores = scores_if_labelled(ws, topic)
    summary = {
        "n_items": len(ws),
        "n_topics": n_topics,
        "n_documents": int(len(ws) * spatial * spatial if spatial else len(ws)),
        "topics_used": int((sizes > 0).sum()),
        "perplexity": res.perplexity,
        "mean_symmetric_kl": float(div[iu].mean()) if iu[0].size else 0.0,
        "min_symmetric_kl": float(div[iu].min()) if iu[0].size else 0.0,
        "n_iter": res.n_iter,
        "seconds": seconds,
        "images_per_second": float(len(ws) / max(seconds, 1e-9)),
        **scores,
    }
    params = {
        "workspace": str(ws.root.resolve()),
        "bow": str(bdir.resolve()),
        "n_topics": n_topics,
        "spatial": spatial,
        "learning_method": learning_method,
        "max_iter": max_iter,
        "batch_size": batch_size,
        "sklearn_seed": res.seed,
    }
    outputs = [
        "results.parquet",
        "doc_topic.npy",
        "topic_word.npy",
        "divergence.npy",
        "topics.json",
        "run.json",
    ]
    if report:
        from clusterlens.report._topics import build_workspace_report

        build_workspace_report(
            ws,
            stage / "report.html",
            labels_pred=topic,
            distances=1.0 - prob,
            figures={k: v for k, v in summary.items() if k != "n_items"},
            params=params,
            title=f"LDA: {n_topics} topics over {n_words} visual words",
            notes={
                t: "top visual words: "
                + ", ".join(
                    f"{w} ({p:.3f})"
                    for w, p in zip(
                        tw[t][:8].tolist(),
                        res.topic_word[t, tw[t][:8]].tolist(),
                        strict=True,
                    )
                )
                for t in range(n_topics)
            },
        )
        outputs.append("report.html")
    write_run(
        stage,
        schema="clusterlens.topics/1",
        command="topics",
        invocation=command,
        parameters=params,
        seed=random_state,
        results=summary,
        outputs=outputs,
    )
    return summary

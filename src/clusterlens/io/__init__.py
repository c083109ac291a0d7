"""Descriptor and feature-file input/output: memory-mapped readers and writers."""

from __future__ import annotations

from clusterlens.io._box_samples import (
    BoxSamples,
    box_samples,
    coco_box_samples,
    voc_box_samples,
    workspace_box_samples,
    yolo_box_samples,
)
from clusterlens.io._boxes import BoxTable
from clusterlens.io._boxes_coco import read_coco_boxes
from clusterlens.io._boxes_voc import read_voc_boxes
from clusterlens.io._boxes_yolo import read_class_names, read_yolo_boxes
from clusterlens.io._descriptors import (
    as_matrix,
    open_descriptors,
    write_bvecs,
    write_fvecs,
    write_ivecs,
    write_oxford_bin,
)
from clusterlens.io._features_labels import (
    read_features,
    read_label_paths,
    read_labels,
)
from clusterlens.io._images import (
    MAX_IMAGE_PIXELS,
    ImageArray,
    UnreadableImageError,
    decode_image,
    list_image_folder,
    load_image_array,
    read_idx,
    read_image,
)
from clusterlens.io._read_boxes import read_boxes
from clusterlens.io._results import (
    read_results,
    write_results,
    write_run,
    write_run_json,
)
from clusterlens.io._workspace import Workspace, create_workspace, open_workspace

__all__ = [
    "MAX_IMAGE_PIXELS",
    "BoxSamples",
    "BoxTable",
    "ImageArray",
    "UnreadableImageError",
    "Workspace",
    "as_matrix",
    "box_samples",
    "coco_box_samples",
    "create_workspace",
    "decode_image",
    "list_image_folder",
    "load_image_array",
    "open_descriptors",
    "open_workspace",
    "read_boxes",
    "read_class_names",
    "read_coco_boxes",
    "read_features",
    "read_idx",
    "read_image",
    "read_label_paths",
    "read_labels",
    "read_results",
    "read_voc_boxes",
    "read_yolo_boxes",
    "voc_box_samples",
    "workspace_box_samples",
    "write_bvecs",
    "write_fvecs",
    "write_ivecs",
    "write_oxford_bin",
    "write_results",
    "write_run",
    "write_run_json",
    "yolo_box_samples",
]

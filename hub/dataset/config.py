"""``dataset:`` in hub.yaml: where the labelled examples' images live and how long they stay."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from protocol.base import StrictModel

__all__ = ["DatasetConfig", "dataset_dir"]


class DatasetConfig(StrictModel):
    dir: Path | None = Field(None, description="the examples' images (copies of snapshots, named by "
                             "their sha256); none: a dataset folder beside snapshots_dir")
    retention_days: float = Field(365, gt=0, description="an example (its row and, once no example "
                                  "names it, its image) is deleted this long after it was recorded")


def dataset_dir(configured: Path | None, snapshots_dir: Path) -> Path:
    """The images' folder: the configured one, else ``dataset`` beside the snapshots."""
    return configured if configured is not None else Path(snapshots_dir).with_name("dataset")

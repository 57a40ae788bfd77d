"""Photo verification for automatic closure: is the problem in the before-photo gone
from the after-photo?

* :mod:`hub.verify.decide` — the pure decisions (alignment checks, fixed / not fixed /
  uncertain) and the :class:`Thresholds` (``verification.thresholds`` in hub.yaml);
* :mod:`hub.verify.images` — the OpenCV side (decode, ORB + RANSAC, ECC, SSIM);
* :mod:`hub.verify.detector` — the bundled detector re-run on the region;
* :mod:`hub.verify.photo` — :class:`PhotoVerifier`, which puts them together.

:func:`build_verifier` makes the verifier hub.yaml's ``verification:`` asks for. This
package imports OpenCV and the TFLite runtime only when a photo verifier is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..cases.closure import NoVerifier, Verifier
from .decide import Evidence, Thresholds, alignment_problem, decide

if TYPE_CHECKING:
    from ..config import VerificationConfig

__all__ = ["Evidence", "Thresholds", "alignment_problem", "build_verifier", "decide"]


def build_verifier(config: VerificationConfig) -> Verifier:
    if config.kind == "none":
        return NoVerifier()
    from .detector import BUNDLED_LABELS, BUNDLED_MODEL
    from .photo import PhotoVerifier

    return PhotoVerifier(config.thresholds, margin=config.margin, detector=config.detector,
                         model=config.model or BUNDLED_MODEL, labels=config.labels or BUNDLED_LABELS)

"""The cityops hub.

OpenCV reads its pixel cap once, when ``cv2`` is first imported: the hub sets it here,
before any of its modules can import ``cv2``, to the cap of :mod:`hub.verify.imagesize`
(which checks every image's header before decoding; this is the second fence). A value
already in the environment is kept.
"""

import os

os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(4096 * 4096))

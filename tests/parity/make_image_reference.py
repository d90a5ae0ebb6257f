"""Regenerate tests/parity/pil-resize-smpte.png: the authors' image preprocessing (PIL's
`Image.resize((224, 224))`, its default bicubic filter, as their dataloader.py calls it)
applied to a 1280 × 720 SMPTE frame from GStreamer's videotestsrc. tests/inputs.rs
compares avscene's capture tail (videoscale method=catrom, add-borders=false) with it.

    python3 -m venv /tmp/pil && /tmp/pil/bin/pip install pillow
    /tmp/pil/bin/python tests/parity/make_image_reference.py
"""
import os
import subprocess
import tempfile

from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
with tempfile.TemporaryDirectory() as tmp:
    source = os.path.join(tmp, "smpte.png")
    subprocess.run(
        ["gst-launch-1.0", "-q", "videotestsrc", "num-buffers=1", "pattern=smpte", "!",
         "video/x-raw,width=1280,height=720", "!", "videoconvert", "!", "video/x-raw,format=RGB",
         "!", "pngenc", "!", "filesink", f"location={source}"],
        check=True,
    )
    image = Image.open(source).convert("RGB").resize((224, 224))
    image.save(os.path.join(here, "pil-resize-smpte.png"))

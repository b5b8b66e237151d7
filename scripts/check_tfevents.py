#!/usr/bin/env python3
"""Reads tfevents files written by microdit's EventWriter with TensorBoard's own reader.

Usage: scripts/check_tfevents.py RUN_DIR_OR_EVENT_FILE [--expect-scalars N] [--expect-images N]

Loads the events with tensorboard's EventAccumulator (pip install tensorboard), prints every
scalar and image series it found, decodes each image with Pillow when that is installed and
checks its size against the event's height and width. Exits non-zero when TensorBoard finds
fewer series than expected or an image does not decode.
"""
import argparse
import io
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="run directory or events.out.tfevents.* file")
    parser.add_argument("--expect-scalars", type=int, default=1)
    parser.add_argument("--expect-images", type=int, default=0)
    args = parser.parse_args()

    acc = EventAccumulator(args.path, size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    ok = True
    for tag in tags["scalars"]:
        events = acc.Scalars(tag)
        values = ", ".join(f"{e.step}:{e.value:.6g}" for e in events)
        print(f"scalar {tag}: {len(events)} points ({values})")
    for tag in tags["images"]:
        for e in acc.Images(tag):
            line = f"image {tag} step {e.step}: {e.width}x{e.height}, {len(e.encoded_image_string)} bytes"
            try:
                from PIL import Image
            except ImportError:
                print(line + " (Pillow not installed, not decoded)")
                continue
            image = Image.open(io.BytesIO(e.encoded_image_string))
            image.load()
            print(line + f", decodes as {image.mode} {image.size[0]}x{image.size[1]}")
            if image.size != (e.width, e.height):
                print(f"  size mismatch: PNG {image.size}, event {(e.width, e.height)}")
                ok = False
    if len(tags["scalars"]) < args.expect_scalars:
        print(f"expected {args.expect_scalars} scalar series, found {len(tags['scalars'])}")
        ok = False
    if len(tags["images"]) < args.expect_images:
        print(f"expected {args.expect_images} image series, found {len(tags['images'])}")
        ok = False
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

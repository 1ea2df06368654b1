"""COMPOSE_VERSION pins what composition makes of the bundled sample: output that changes without a bump fails.

Every training page of the bundled sample (``demo.sample.sample_manifest``; its validation pages came later) is composed directly (no Ray, no
detector) from the regions the demo layout model is scripted to return for its design (``demo.scenes.SCENES``,
picked by aspect ratio as the demo model does) and the demo cell model's ``TEMPLATE_CELLS`` in every table,
with each family's default recipe and the default options. The digest covers every sample's JPEG bytes,
label and the fields its LMDB meta is made of, and each page's status.
"""
import hashlib
import json

import cv2
import pyarrow.parquet as pq

from ocrvl_ray.core.records import Page, Region
from ocrvl_ray.demo.sample import TEMPLATE_CELLS, sample_manifest
from ocrvl_ray.demo.scenes import SCENES, scene_for_aspect
from ocrvl_ray.layout.compose import COMPOSE_VERSION, ComposeOptions, compose_page, get_recipe, orient_page

#: (COMPOSE_VERSION, digest of the bundled sample's composition): update both together.
PIN = (2, "42196cd0eaa7c99a")


def scripted_regions(width: int, height: int) -> tuple[list[Region], list[Region]]:
    """The demo detectors' regions for a page of this size: its design's layout regions, cells in each table."""
    regions, cells = [], []
    for label, score, x1, y1, x2, y2, order in SCENES[scene_for_aspect(width / height)].regions:
        box = (x1 * width, y1 * height, x2 * width, y2 * height)
        regions.append(Region(label, score, box, order=order))
        if label == "table":
            tw, th = box[2] - box[0], box[3] - box[1]
            cells += [Region("cell", 0.9, (box[0] + a * tw, box[1] + b * th, box[0] + c * tw, box[1] + d * th),
                             kind="cell", table=len(regions) - 1) for a, b, c, d in TEMPLATE_CELLS]
    return regions, cells


def page_digests() -> dict[str, str]:
    """page_id -> sha256 of its composition (status, then per sample its fields and JPEG bytes)."""
    out = {}
    rows = [r for r in pq.read_table(sample_manifest()).to_pylist() if r["split"] == "train"]  # the pinned pages
    for row in sorted(rows, key=lambda r: r["page_id"]):
        page = Page.from_row(row)
        image = cv2.imread(page.image_path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        page, image = orient_page(page, image)
        regions, cells = scripted_regions(image.shape[1], image.shape[0])
        res = compose_page(page, image, regions, cells, get_recipe(page.dataset), ComposeOptions())
        h = hashlib.sha256(str(res.status.value if hasattr(res.status, "value") else res.status).encode())
        for s in res.samples:
            fields = [s.kind, s.text, s.width, s.height, s.filename, s.layout_label, list(s.box), s.recipe, s.polygon]
            h.update(json.dumps(fields, ensure_ascii=False).encode())
            h.update(s.image)
        out[page.page_id] = h.hexdigest()
    return out


def sample_digest() -> str:
    return hashlib.sha256(json.dumps(page_digests(), sort_keys=True).encode()).hexdigest()[:16]


def test_compose_version_pins_the_bundled_sample_output():
    digest = sample_digest()
    if digest == PIN[1]:
        assert COMPOSE_VERSION == PIN[0], (
            f"COMPOSE_VERSION is {COMPOSE_VERSION}, the pin says {PIN[0]}: set PIN = ({COMPOSE_VERSION}, "
            f"{digest!r}) in tests/test_compose_version.py")
        return
    version = COMPOSE_VERSION if COMPOSE_VERSION != PIN[0] else COMPOSE_VERSION + 1
    raise AssertionError(
        f"the bundled sample composes to {digest}, pinned {PIN[1]} for COMPOSE_VERSION {PIN[0]}: composition "
        f"output changed, so set COMPOSE_VERSION = {version} in ocrvl_ray/layout/compose/__init__.py (a resume "
        f"of an LMDB composed before is then refused instead of mixing two compositions) and PIN = ({version}, "
        f"{digest!r}) in tests/test_compose_version.py")

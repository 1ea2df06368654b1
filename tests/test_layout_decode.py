"""decode stage: every image kind normalised to 8-bit BGR, every bad input a Skip, both hand-offs."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from ocrvl_ray.core.records import Page, Word, pages_to_table
from ocrvl_ray.core.skips import Skip
from ocrvl_ray.ingest.geometry import clockwise_from_top_left
from ocrvl_ray.layout.stages.decode import OK, decode_batch, exif_transform_points, page_image
from ocrvl_ray.layout.config import LayoutConfig
from ocrvl_ray.testing.images import BAD_KINDS, GOOD_KINDS, pattern_image, write_image

MAX_PIXELS = LayoutConfig().max_pixels

W, H = 64, 48


def manifest_batch(paths, width=W, height=H, words=None, attrs=None):
    pages = [Page(page_id=f"p{i}", dataset="ocr_public", split="train", image_name=str(p).rsplit("/", 1)[-1],
                  image_path=None if p is None else str(p), width=width, height=height,
                  words=list(words or []), source=f"label{i}.json", attrs=dict(attrs or {}))
             for i, p in enumerate(paths)]
    table = pages_to_table(pages)
    # the numpy batch Ray hands a task: structs become dicts, lists become object arrays
    return {name: np.array(table.column(name).to_pylist() + [None], dtype=object)[:-1]
            if table.column(name).type not in ("int32",) else table.column(name).to_numpy()
            for name in table.column_names}


def expected_bgr(kind: str, path) -> np.ndarray:
    """What each good kind must decode to, from the source pattern (palette: Pillow's own RGB of the file)."""
    rgb = pattern_image(W, H)
    if kind == "palette_png":
        rgb = np.asarray(Image.open(path).convert("RGB"))
    elif kind in ("gray_png", "gray16_png"):
        g = np.asarray(Image.fromarray(rgb).convert("L"))
        rgb = np.repeat(g[:, :, None], 3, axis=2)
    elif kind == "rgba_png":
        rgb = rgb.copy()
        rgb[:, W // 2:] = 255  # transparent half composited on white
    elif kind == "exif_rotated_jpeg":
        rgb = np.rot90(rgb, k=-1)  # orientation 6: shown rotated 90 degrees clockwise
    return np.ascontiguousarray(rgb[:, :, ::-1])


@pytest.mark.parametrize("handoff", ["bytes", "array"])
def test_good_kinds_decode_to_8bit_bgr(tmp_path, handoff):
    paths = [write_image(tmp_path / kind, kind, W, H) for kind in GOOD_KINDS]
    out = decode_batch(manifest_batch(paths), MAX_PIXELS, handoff)
    assert list(out["status"]) == [OK] * len(GOOD_KINDS), out["detail"]
    for i, kind in enumerate(GOOD_KINDS):
        img = page_image(out, i)
        want = expected_bgr(kind, paths[i])
        assert img.dtype == np.uint8 and img.shape == want.shape, kind
        diff = np.abs(img.astype(int) - want.astype(int))
        if kind.endswith("jpeg"):
            assert diff.mean() < 4, kind
        else:
            assert diff.max() <= 1, kind
        assert (out["width"][i], out["height"][i]) == (want.shape[1], want.shape[0])
        assert np.asarray(out["det_image"][i]).shape == want.shape  # small: no reduction


def test_bytes_handoff_moves_original_file_when_plain(tmp_path):
    paths = [write_image(tmp_path / k, k, W, H) for k in ("rgb_png", "rgb_jpeg", "cmyk_jpeg", "rgba_png")]
    out = decode_batch(manifest_batch(paths), MAX_PIXELS, "bytes")
    assert out["image_bytes"][0] == paths[0].read_bytes()
    assert out["image_bytes"][1] == paths[1].read_bytes()
    assert out["image_bytes"][2][:8] == b"\x89PNG\r\n\x1a\n"  # CMYK normalised once, then lossless
    assert out["image_bytes"][3][:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kind,skip", [("zero_byte", Skip.IMAGE_CORRUPT), ("corrupt", Skip.IMAGE_CORRUPT),
                                       ("truncated_png", Skip.IMAGE_CORRUPT),
                                       ("truncated_jpeg", Skip.IMAGE_CORRUPT),
                                       ("bomb_png", Skip.IMAGE_TOO_LARGE)])
def test_bad_inputs_are_skips_not_exceptions(tmp_path, kind, skip):
    assert kind in BAD_KINDS
    bad = write_image(tmp_path / kind, kind, W, H)
    good = write_image(tmp_path / "good.png", "rgb_png", W, H)
    out = decode_batch(manifest_batch([bad, good]), MAX_PIXELS, "array")
    assert out["status"][0] == skip.value
    assert str(bad) in out["detail"][0]
    assert out["status"][1] == OK  # the bad neighbour does not take the batch down
    assert np.asarray(out["image"][0]).size == 0 and np.asarray(out["det_image"][0]).size == 0


def test_missing_file_and_pixel_limit_from_header(tmp_path):
    good = write_image(tmp_path / "good.png", "rgb_png", W, H)
    out = decode_batch(manifest_batch([tmp_path / "nope.png", None, good]), W * H - 1, "array")
    assert out["status"][0] == Skip.IMAGE_MISSING.value and "nope.png" in out["detail"][0]
    assert out["status"][1] == Skip.IMAGE_MISSING.value
    assert out["status"][2] == Skip.IMAGE_TOO_LARGE.value and "max_pixels" in out["detail"][2]
    assert decode_batch(manifest_batch([good]), W * H, "array")["status"][0] == OK


def test_rows_already_skipped_pass_through(tmp_path):
    good = write_image(tmp_path / "good.png", "rgb_png", W, H)
    batch = manifest_batch([good, good])
    batch["status"] = np.array([Skip.IMAGE_UNMATCHED.value, OK], dtype=object)
    batch["detail"] = np.array(["earlier", ""], dtype=object)
    out = decode_batch(batch, MAX_PIXELS, "bytes")
    assert out["status"][0] == Skip.IMAGE_UNMATCHED.value and out["detail"][0] == "earlier"
    assert out["image_bytes"][0] == b"" and out["status"][1] == OK


def test_detector_input_is_reduced_and_maps_back_to_page_pixels(tmp_path):
    """A 2480x3508 page: the detector sees <= 1024 px; a feature found there maps back to page pixels."""
    w, h = 2480, 3508
    page = np.full((h, w, 3), 255, np.uint8)
    x1, y1, x2, y2 = 700, 1800, 1120, 1870  # a black bar = something the detector would box
    page[y1:y2, x1:x2] = 0
    for kind, ext in (("png", ".png"), ("jpeg", ".jpg")):
        path = tmp_path / f"page{ext}"
        Image.fromarray(page).save(path, quality=95)
        for handoff in ("bytes", "array"):
            out = decode_batch(manifest_batch([path], width=w, height=h), MAX_PIXELS, handoff, det_max_side=1024)
            det = np.asarray(out["det_image"][0])
            assert max(det.shape[:2]) <= 1024 and out["width"][0] == w and out["height"][0] == h
            ys, xs = np.nonzero(det[:, :, 0] < 128)
            sx, sy = out["det_sx"][0], out["det_sy"][0]
            back = (xs.min() * sx, ys.min() * sy, (xs.max() + 1) * sx, (ys.max() + 1) * sy)
            assert np.allclose(back, (x1, y1, x2, y2), atol=2 * max(sx, sy)), (kind, handoff, back)
            assert page_image(out, 0).shape == (h, w, 3)


def test_exif_rotation_maps_words_labelled_in_stored_frame(tmp_path):
    path = write_image(tmp_path / "rot.jpg", "exif_rotated_jpeg", W, H)  # stored 64x48, shown 48x64
    word = Word("1", [0, 0, 10, 0, 10, 5, 0, 5], "가")
    stored = decode_batch(manifest_batch([path], width=W, height=H, words=[word]), MAX_PIXELS, "array")
    assert (stored["width"][0], stored["height"][0]) == (H, W)
    # orientation 6 = rotate 90 clockwise: stored (x, y) -> shown (H - y, x)
    assert stored["words"][0][0]["points"] == [43.0, 0.0, 48.0, 0.0, 48.0, 10.0, 43.0, 10.0]
    shown = decode_batch(manifest_batch([path], width=H, height=W, words=[word]), MAX_PIXELS, "array")
    assert shown["words"][0][0]["points"] == word.points  # label already in the displayed frame


def test_exif_point_transforms_match_pillow():
    """Each EXIF orientation moves a marked pixel where Pillow's exif_transpose moves it."""
    w, h = 7, 5
    for orientation in range(2, 9):
        a = np.zeros((h, w), np.uint8)
        a[1, 2] = 255
        im = Image.fromarray(a)
        exif = im.getexif()
        exif[0x0112] = orientation
        im.info["exif"] = exif.tobytes()
        im2 = ImageOps.exif_transpose(Image.open(_roundtrip(im, exif)))
        ys, xs = np.nonzero(np.asarray(im2) > 128)
        px = exif_transform_points([2.5, 1.5], orientation, w, h)  # pixel centre
        assert (px[0] - 0.5, px[1] - 0.5) == (xs[0], ys[0]), orientation


def _roundtrip(im, exif):
    import io

    buf = io.BytesIO()
    im.save(buf, "PNG", exif=exif.tobytes())
    buf.seek(0)
    return buf


def test_clockwise_from_top_left():
    ccw = [0, 0, 0, 5, 10, 5, 10, 0]
    assert clockwise_from_top_left(ccw) == [0, 0, 10, 0, 10, 5, 0, 5]
    rotated = [10, 5, 0, 5, 0, 0, 10, 0]
    assert clockwise_from_top_left(rotated) == [0, 0, 10, 0, 10, 5, 0, 5]


def test_page_image_decodes_bytes_like_opencv(tmp_path):
    path = write_image(tmp_path / "a.png", "rgb_png", W, H)
    out = decode_batch(manifest_batch([path]), MAX_PIXELS, "bytes")
    assert np.array_equal(page_image(out, 0), cv2.imread(str(path), cv2.IMREAD_COLOR))


def test_text_in_wild_pages_are_turned_upright_by_compose_orient_page(tmp_path):
    path = write_image(tmp_path / "tiw.png", "rgb_png", W, H)
    word = Word("1", [0, 0, 10, 0, 10, 5, 0, 5], "가")
    for flag, size, points, red_at in (
            ("usd", (W, H), [54, 43, 64, 43, 64, 48, 54, 48], (H - 1, W - 1)),   # 180 degrees
            ("du", (H, W), [43, 0, 48, 0, 48, 10, 43, 10], (0, H - 1)),          # 90 degrees clockwise
            ({"usd": False, "ud": False, "du": False}, (W, H), word.points, (0, 0))):  # upright
        out = decode_batch(manifest_batch([path], words=[word], attrs={"orientation": flag}), MAX_PIXELS, "bytes")
        assert out["status"][0] == OK, out["detail"]
        assert (out["width"][0], out["height"][0]) == size
        assert out["words"][0][0]["points"] == [float(v) for v in points]
        img = page_image(out, 0)
        assert img.shape[:2] == (size[1], size[0])
        assert tuple(img[red_at]) == (0, 0, 255), flag  # the red top-left mark moved with the page
        assert np.asarray(out["det_image"][0]).shape == img.shape

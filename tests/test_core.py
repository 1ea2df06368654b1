"""core: one label decoder for every LMDB reader, one unwrapper of Ray errors."""
from __future__ import annotations

import pickle

import lmdb
import pytest

from ocrvl_ray.lmdb import schema as S
from ocrvl_ray.core.errors import OcrvlError, unwrap_ray, user_error
from ocrvl_ray.lmdb import LmdbReader
from ocrvl_ray.report.inspect import inspect_lmdb


def test_reader_and_inspect_read_the_same_label_text(tmp_path):
    """The bytes on which the two former decoders disagreed now give one text, erniekit's."""
    raws = [pickle.dumps("안녕"), b"\xffabc", pickle.dumps({"words": ["가", 3, "나"]}),
            b"\x80\x04cos\nsystem\nq\x00."]                       # a pickle that would import code
    env = lmdb.open(str(tmp_path / "x.lmdb"), map_size=1 << 22)
    with env.begin(write=True) as txn:
        txn.put(S.NUM_SAMPLES, str(len(raws)).encode())
        for i, raw in enumerate(raws, start=1):
            txn.put(S.key(S.IMAGE_FMT, i), b"not an image")
            txn.put(S.key(S.GT_FMT, i), raw)
    env.close()
    with LmdbReader(str(tmp_path / "x.lmdb")) as r:
        reader = [r.label(i) for i in range(len(r))]
    report = inspect_lmdb(tmp_path / "x.lmdb", contact=len(raws))
    assert [c["label"] for c in report["contact"]] == reader
    assert reader[1] == "abc" and reader[2] == "가 나"
    assert reader[0].endswith("안녕.")                # not a dict: the UTF-8 text of the bytes, as erniekit
    assert "system" in reader[3]                     # refused to unpickle: plain bytes, nothing imported


def test_user_error_inside_ray_wrappers():
    from ray.exceptions import RayTaskError

    inner = OcrvlError("layout.model_dir=/x: no layout model there")
    wrapped = RayTaskError("f", "Traceback ...", inner).as_instanceof_cause()
    assert unwrap_ray(wrapped) is inner and user_error(wrapped) is inner
    try:
        try:
            raise wrapped
        except Exception as e:
            raise RuntimeError("stage failed") from e
    except RuntimeError as outer:
        assert user_error(outer) is inner
    # an error that only carries the remote traceback as text (e.g. ActorDiedError)
    text = RuntimeError("The actor died ...\n  raise OcrvlError(...)\nocrvl_ray.core.errors.OcrvlError: bad dir; fix it\n")
    assert str(user_error(text)) == "bad dir; fix it"
    assert user_error(ValueError("unrelated")) is None
    with pytest.raises(ZeroDivisionError):
        raise unwrap_ray(ZeroDivisionError("plain errors pass through"))

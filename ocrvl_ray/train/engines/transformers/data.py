"""A rank's training data: its LMDB shards (``rank::world``), a deterministic order per (seed, epoch, rank), the
PaddleFormers engine's augmentation (same knobs, same order, one seeded RNG per sample), the generation's prompt,
loss on the answer tokens only, and a counted skip of samples longer than ``max_seq_len``.

A sample is the generation's prompt with the image placeholder expanded to the image's token count, then the label
and ``<|end_of_sentence|>``; ``labels`` are -100 on the prompt. The position in the stream, ``(epoch, offset)``, is
all a checkpoint needs: sample k of an epoch, its augmentation and its skip are a function of (seed, rank, epoch,
k). No Ray here; LMDB code is imported where it is read (``bench/gpu_check.py`` runs the encoder and collate on a
bare CUDA machine).
"""
from __future__ import annotations

import io
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

from ocrvl_ray.core import generations
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.eval.engines import IMAGE_TOKEN

IGNORE = -100
#: Why a training sample is skipped (counted per rank in its data position).
SKIPS = ("empty_label", "too_long")


def rank_shards(paths: list[str], rank: int, world: int) -> list[str]:
    """This rank's LMDB directories: shards ``rank::world`` of every path (``lmdb.shards`` contract)."""
    from ocrvl_ray.lmdb.shards import assign, expand

    return [s for p in paths for s in assign(expand(p), rank, world)]


def eval_shards(paths: list[str]) -> list[str]:
    from ocrvl_ray.lmdb.shards import expand

    return [s for p in paths for s in expand(p)]


def augment(image, params: Optional[dict], rng: random.Random):
    """PaddleFormers' PaddleOCR-VL train augmentation (``get_ocr_augmentations``: scale, single-side white
    padding, discrete rotation, colour jitter, JPEG, each applied with its probability), drawn from ``rng``."""
    from PIL import Image, ImageEnhance, ImageOps

    if not params:
        return image
    p = params
    if p["scale_p"] > 0 and rng.random() < p["scale_p"]:
        s = rng.uniform(*p["scale_range"])
        image = image.resize((max(1, int(image.width * s)), max(1, int(image.height * s))), Image.BICUBIC)
    if p["padding_p"] > 0 and rng.random() < p["padding_p"]:
        pad = rng.randint(*p["padding_range"])
        edge = rng.choice(["left", "top", "right", "bottom"])
        if pad:
            border = tuple(pad if e == edge else 0 for e in ("left", "top", "right", "bottom"))
            image = ImageOps.expand(image, border=border, fill="white")
    if p["rotation_p"] > 0 and p["rotation_degrees"] and rng.random() < p["rotation_p"]:
        image = image.rotate(rng.choice(list(p["rotation_degrees"])), Image.NEAREST, expand=True)
    if p["color_jitter_p"] > 0 and rng.random() < p["color_jitter_p"]:
        # torchvision ColorJitter(brightness=0.3, contrast=0.3, saturation=0.2, hue=0.1), in a random order
        ops = [("b", 0.3), ("c", 0.3), ("s", 0.2), ("h", 0.1)]
        rng.shuffle(ops)
        for op, amount in ops:
            if op == "h":
                shift = int(rng.uniform(-amount, amount) * 255)
                h, s_, v = image.convert("HSV").split()
                h = h.point(lambda x: (x + shift) % 256)
                image = Image.merge("HSV", (h, s_, v)).convert("RGB")
            else:
                factor = rng.uniform(1 - amount, 1 + amount)
                enhance = {"b": ImageEnhance.Brightness, "c": ImageEnhance.Contrast, "s": ImageEnhance.Color}[op]
                image = enhance(image).enhance(factor)
    if p["jpeg_p"] > 0 and rng.random() < p["jpeg_p"]:
        buf = io.BytesIO()
        image.convert("RGB").save(buf, "JPEG", quality=rng.randint(*p["jpeg_quality_range"]))
        buf.seek(0)
        image = Image.open(buf).convert("RGB")
    return image


class Encoder:
    """Image + label -> one training example (token ids, answer-only labels, pixel patches, grid), or None when
    it is longer than ``max_seq_len``."""

    def __init__(self, base: str, gen: generations.Generation, prompt: str, max_seq_len: int):
        from transformers import AutoTokenizer, PaddleOCRVLImageProcessor

        self.images = PaddleOCRVLImageProcessor.from_pretrained(base)
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        self.text = gen.prompt(prompt)
        self.eos = generations.EOS
        self.max_seq_len = max_seq_len
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.image_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    def resize(self, image):
        """Upstream's pre-resize to the processor's pixel budget (augmentation comes after it)."""
        from transformers.models.paddleocr_vl.image_processing_paddleocr_vl import smart_resize

        factor = self.images.patch_size * self.images.merge_size
        h, w = smart_resize(image.height, image.width, factor=factor, min_pixels=self.images.size.shortest_edge,
                            max_pixels=self.images.size.longest_edge)
        return image.convert("RGB").resize((w, h))

    def __call__(self, image, label: str) -> Optional[dict[str, Any]]:
        vis = self.images(images=[image], return_tensors="pt")
        grid = vis["image_grid_thw"]
        n_image = int(grid.prod()) // (self.images.merge_size ** 2)
        prompt = self.tokenizer(self.text.replace(IMAGE_TOKEN, IMAGE_TOKEN * n_image, 1),
                                add_special_tokens=False)["input_ids"]
        answer = self.tokenizer(label + self.eos, add_special_tokens=False)["input_ids"]
        if len(prompt) + len(answer) > self.max_seq_len:
            return None
        return {"input_ids": prompt + answer, "labels": [IGNORE] * len(prompt) + answer,
                "mm_token_type_ids": [int(t == self.image_id) for t in prompt] + [0] * len(answer),
                "pixel_values": vis["pixel_values"], "image_grid_thw": grid}


def collate(examples: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-padded batch: input_ids, attention_mask, labels (-100 on prompt and padding), mm_token_type_ids (1 on
    image tokens: the model's M-RoPE positions), pixel patches, grids."""
    import torch

    n = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), n), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), n), dtype=torch.long)
    types = torch.zeros((len(examples), n), dtype=torch.long)
    for i, e in enumerate(examples):
        k = len(e["input_ids"])
        ids[i, :k] = torch.tensor(e["input_ids"])
        labels[i, :k] = torch.tensor(e["labels"])
        types[i, :k] = torch.tensor(e["mm_token_type_ids"])
        mask[i, :k] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "mm_token_type_ids": types,
            "pixel_values": torch.cat([e["pixel_values"] for e in examples]),
            "image_grid_thw": torch.cat([e["image_grid_thw"] for e in examples])}


@dataclass
class Position:
    """Where a rank's stream stands: the next sample is ``order(epoch)[offset]``; skipped counts the whole run."""
    epoch: int = 0
    offset: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class Stream:
    """A rank's endless sample stream over its shards (a new shuffled order every epoch)."""

    def __init__(self, shards: list[str], encoder: Encoder, seed: int, rank: int, augment_params: Optional[dict],
                 position: Optional[Position] = None):
        from ocrvl_ray.lmdb.reader import LmdbReader

        self.readers = [LmdbReader(s) for s in shards]
        self.index = [(r, i) for r, reader in enumerate(self.readers) for i in range(len(reader))]
        if not self.index:
            raise OcrvlError(f"rank {rank}: its shards {', '.join(shards)} hold no samples")
        self.encoder, self.seed, self.rank, self.params = encoder, seed, rank, augment_params
        self.position = position or Position()
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch, self.rank]).permutation(len(self.index)))
        return self._order[1]

    def sample(self, k: int):
        """(reader number, index) of the sample at ``offset`` k of the current epoch."""
        return self.index[int(self.order(self.position.epoch)[k])]

    def _skip(self, why: str) -> None:
        self.position.skipped[why] = self.position.skipped.get(why, 0) + 1

    def next(self) -> dict[str, Any]:
        """The next example that fits; empty labels and over-long samples are skipped and counted."""
        for _ in range(len(self.index)):
            pos = self.position
            if pos.offset >= len(self.index):
                pos.epoch, pos.offset = pos.epoch + 1, 0
            r, i = self.sample(pos.offset)
            rng = random.Random(f"{self.seed}/{self.rank}/{pos.epoch}/{pos.offset}")
            pos.offset += 1
            label = self.readers[r].label(i)
            if not label:
                self._skip("empty_label")
                continue
            example = self.encoder(augment(self.encoder.resize(self.readers[r].image(i)), self.params, rng), label)
            if example is None:
                self._skip("too_long")
                continue
            return example
        raise OcrvlError(f"rank {self.rank}: no sample of its {len(self.index)} fits max_seq_len="
                         f"{self.encoder.max_seq_len} or has a label; raise max_seq_len or check the LMDB")

    def close(self) -> None:
        for r in self.readers:
            r.close()


class EvalSet:
    """This rank's part (every world-th sample) of the eval LMDBs, unaugmented, encoded as it is read."""

    def __init__(self, shards: list[str], encoder: Encoder, rank: int, world: int):
        from ocrvl_ray.lmdb.reader import LmdbReader

        self.readers = [LmdbReader(s) for s in shards]
        refs = [(r, i) for r, reader in enumerate(self.readers) for i in range(len(reader))]
        self.refs = refs[rank::world]
        self.encoder = encoder

    def examples(self):
        """Examples with a label that fit ``max_seq_len`` (the others are left out of the eval loss)."""
        for r, i in self.refs:
            label = self.readers[r].label(i)
            ex = self.encoder(self.encoder.resize(self.readers[r].image(i)), label) if label else None
            if ex is not None:
                yield ex

    def close(self) -> None:
        for r in self.readers:
            r.close()

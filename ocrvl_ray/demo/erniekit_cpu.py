"""The user's erniekit fork on CPU, for the demo loop and the fork's tests (``entry=ocrvl_ray.demo.erniekit_cpu:run``).

The fork assumes a GPU in four places (platform notes §A); none of these patches applies on GPU, where the
default entry (``ocrvl_ray.train.entries:erniekit``) runs the fork unchanged:
  * ``FinetuningArguments.__post_init__`` forces bf16 (CPU has no bf16 conv2d);
  * the non-flash causal mask is S x (S+1);
  * Paddle 3.3.1 CPU ``nll_loss(reduction="mean")`` with ignored labels corrupts the heap (and CPU
    ``log_softmax`` over the 103424-token vocabulary takes minutes);
  * the memory logging in ``PretrainingTrainer._maybe_log_save_evaluate`` is GPU-only.
"""
from __future__ import annotations

import sys


def cpu_workarounds() -> None:
    """Patch the fork (imported from ``ernie_root``, on ``sys.path``) for a CPU run; idempotent."""
    import paddle
    import paddle.nn.functional as F
    from paddleformers.trainer import Trainer, TrainingArguments

    import ernie.modeling_paddleocr_vl as vl
    from ernie.modeling_paddleocr_vl_ernie import Ernie4_5Model
    from erniekit.train.ocr_vl_sft.pretraining_trainer import PretrainingTrainer

    if getattr(TrainingArguments, "_ocrvl_cpu", False):
        return
    post_init = TrainingArguments.__post_init__

    def no_bf16(self):
        self.bf16 = False                                 # CPU has no bf16 conv2d
        post_init(self)

    TrainingArguments.__post_init__ = no_bf16
    TrainingArguments._ocrvl_cpu = True

    update_mask = Ernie4_5Model._update_causal_mask

    def square_mask(self, attention_mask, input_tensor, *args, **kwargs):
        mask = update_mask(self, attention_mask, input_tensor, *args, **kwargs)
        if isinstance(mask, paddle.Tensor) and mask.shape[-1] == input_tensor.shape[1] + 1:
            mask = mask[..., : input_tensor.shape[1]]
        return mask

    Ernie4_5Model._update_causal_mask = square_mask

    def cross_entropy(shift_logits, shift_labels):       # same value as the fork's, reduction="none" + mean
        log_softmax = shift_logits - paddle.logsumexp(shift_logits, axis=-1, keepdim=True)
        losses = F.nll_loss(log_softmax, shift_labels, reduction="none")
        keep = (shift_labels != -100).astype(losses.dtype)
        return (losses * keep).sum() / keep.sum().clip(min=1.0)

    vl.paddle_cross_entropy_by_hand = cross_entropy
    PretrainingTrainer._maybe_log_save_evaluate = Trainer._maybe_log_save_evaluate


def on_path() -> None:
    """The ERNIE checkout (``ernie_root`` / ``$ERNIE_ROOT``) first on ``sys.path``."""
    from ocrvl_ray.train.entries import ernie_checkout

    root = str(ernie_checkout())
    if root not in sys.path:
        sys.path.insert(0, root)


def run(config: dict) -> None:
    """Entry: the CPU workarounds, then the production erniekit entry with the config unchanged."""
    from ocrvl_ray.train import entries

    on_path()
    cpu_workarounds()
    entries.erniekit(config)

"""Keep a training run's resident memory near what its tensors need (why: ``llmcse.utils.memory``)."""

from __future__ import annotations

import logging

from llmcse.utils.memory import trim_heap

logger = logging.getLogger(__name__)


def _layers(model) -> list:
    """The model's transformer blocks (transformers' ``GradientCheckpointingLayer``), in order."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # transformers < 4.52: no common block class; trimming per step only
        return []
    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def heap_trimming(model, every_n_layers: int = 3):
    """A TrainerCallback that trims the C heap while ``model`` trains: after the forward and the
    backward of every ``every_n_layers``-th transformer block, and after each optimizer step.

    Only training passes trim (evaluation allocates little and would pay the page faults for
    nothing). The hooks come off when training ends. Where there is no glibc, nothing is installed.
    """
    from transformers import TrainerCallback

    handles = []

    def after_block(module, inputs, output):
        if not (module.training and trim_heap()):
            return
        hidden = output[0] if isinstance(output, tuple) else output
        if getattr(hidden, "requires_grad", False):  # backward reaches this block next: trim before it
            hidden.register_hook(lambda grad: (trim_heap(), grad)[1])

    if trim_heap():
        handles = [block.register_forward_hook(after_block) for block in _layers(model)[every_n_layers - 1::every_n_layers]]

    class TrimHeap(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            trim_heap()

        def on_train_end(self, args, state, control, **kwargs):
            for handle in handles:
                handle.remove()
            trim_heap()

    return TrimHeap()

"""Adam with linear warm-up then linear decay; two learning rates for the search."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="power_bert_tf")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Rises linearly to `peak` over `warmup_steps`, then falls linearly from `peak` to 0
    at `total_steps`.

    The learning rate at 0-based `step` is peak * (step + 1) / warmup_steps during the
    warm-up, then peak * (total_steps - step) / (total_steps - warmup_steps). The
    reference's AdamWarmup decays over the whole run instead, peak * (1 - t / total), so
    the two differ by up to the warm-up proportion of the peak (docs/method.md,
    "Deviations from the IBM reference").
    """

    def __init__(self, peak: float, total_steps: int, warmup_steps: int):
        self.peak = peak
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(max(self.warmup_steps, 1))
        decay = float(max(self.total_steps - self.warmup_steps, 1))
        rising = self.peak * (step + 1.0) / warmup
        falling = self.peak * ops.maximum(0.0, (self.total_steps - step) / decay)
        return ops.where(step < self.warmup_steps, rising, ops.minimum(falling, self.peak))

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}


def adam(peak: float, total_steps: int, warmup_proportion: float,
         name: str) -> keras.optimizers.Adam:
    """Adam (beta 0.9 / 0.999) on the warm-up + linear-decay schedule."""
    schedule = WarmupLinearDecay(peak, total_steps, int(warmup_proportion * total_steps))
    return keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.999, name=name)

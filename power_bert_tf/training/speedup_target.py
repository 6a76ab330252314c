"""Speed-up on demand: a search steered to a FLOP-bound target instead of by lambda.

The lambda search penalises lambda * sum_j j * mass(j) and leaves the speed-up to
chance: how far r falls depends on lambda, the r learning rate and the number of
steps (Adam moves each r_j[i] by about one learning rate a step). Here the search
is instead a projected gradient method on the constraint

    flop_bound(read_out(r)) >= budget(t),

with a budget that tightens from 1x to the target over the first `ramp` fraction
of the search steps (the cubic schedule of Zhu & Gupta's gradual pruning) and is
then held. After every optimiser step that leaves r outside the budget, each layer's
mass is cut to

    m_j = max(1, mass(j) * exp(-tau * j))

by cutting r_j's tail where its running mass passes m_j:
r_j[i] <- clip(m_j - sum_{k<i} r_j[k], 0, r_j[i]). The least significant ranks go to
0 and the most significant keep their r, so during the search the model
already works under the elimination Hard-Extract will do, and no layer loses its
most significant vector (a layer whose r all fell to 0 would zero even [CLS]). tau,
the controller's state, is the smallest that meets the budget (bisection: the bound
only grows with tau); the weight j makes deeper layers give up more, geometrically,
as the mass loss's j weighting does additively. Because the projection moves r as far
as the budget needs in one step, the speed-up reached does not depend on the r
learning rate or the number of steps. See docs/method.md, "Speed-up on demand".
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence, Sized

import numpy as np

from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.retention import (FRACTION_SCALE, RelativeRetention, RetentionConfig,
                                           flop_bound, served_flop_bound)

BISECTION_STEPS = 40
# The projection meets the budget with every mass this much lower than it is, so that
# float32 storage and the order of summation cannot lift a mass over an integer and
# change the read-out.
MASS_MARGIN = 1e-3


def largest_speedup(config: EncoderConfig, sequence_length: int) -> float:
    """The FLOP bound of keeping only [CLS] after the first layer's attention."""
    return flop_bound(config, RetentionConfig((1,) * config.num_layers, sequence_length))


def check_reachable(config: EncoderConfig, sequence_length: int, target: float) -> None:
    """A one-line error when no retention configuration reaches `target`."""
    largest = largest_speedup(config, sequence_length)
    if target > largest:
        raise PowerBertError(
            f"--target_speedup={target:g} cannot be reached: the largest FLOP-bound speed-up "
            f"of this {config.num_layers}-layer model at --max_seq_length={sequence_length} "
            f"is {largest:.2f}x (every layer keeping only [CLS])")


def budget(step: int, total_steps: int, target: float, ramp: float) -> float:
    """Speed-up the projection enforces after `step` optimiser steps.

    The pruned FLOP fraction p = 1 - 1/speed-up rises as p_T * (1 - (1 - t)^3),
    t = step / (ramp * total_steps) capped at 1: fast at first, gently at the end.
    """
    ramp_steps = max(1.0, ramp * total_steps)
    progress = min(1.0, step / ramp_steps)
    pruned = (1.0 - 1.0 / target) * (1.0 - (1.0 - progress) ** 3)
    return 1.0 / (1.0 - pruned)


@dataclasses.dataclass
class ControllerState:
    """What the controller did after one optimiser step."""

    step: int
    budget: float  # speed-up enforced at this step
    bound: float  # FLOP bound of the read-out after the projection
    tau: float  # shrinkage applied (0 when r already met the budget)

    def to_dict(self) -> dict:
        return {"step": self.step, "budget": round(self.budget, 4),
                "bound": round(self.bound, 4), "tau": round(self.tau, 6)}


class SpeedupController:
    """Projects the Soft-Extract retention parameters onto the speed-up budget.

    Args:
        config: the encoder's shape (for the FLOP bound).
        retention_variables: r_1, ..., r_L, each a (N,) variable in [0, 1].
        sequence_length: N.
        target: the FLOP-bound speed-up to reach, > 1.
        total_steps: optimiser steps of the whole search.
        ramp: fraction of `total_steps` over which the budget tightens.
    """

    def __init__(self, config: EncoderConfig, retention_variables: Sequence,
                 sequence_length: int, target: float, total_steps: int, ramp: float):
        check_reachable(config, sequence_length, target)
        self.config = config
        self.variables = list(retention_variables)
        self.sequence_length = sequence_length
        self.target = target
        self.total_steps = total_steps
        self.ramp = ramp
        self.weights = np.arange(1, len(self.variables) + 1, dtype=np.float64)[:, None]
        self.trajectory: list[ControllerState] = []

    def bound(self, r: np.ndarray, margin: float = 0.0) -> float:
        """FLOP bound of the read-out of (L, N) retention parameters `r`, each mass
        raised by `margin`."""
        masses = r.astype(np.float64).sum(axis=1) + margin
        retention = RetentionConfig.from_masses(masses, self.sequence_length)
        return flop_bound(self.config, retention)

    def _shrink(self, r: np.ndarray, tau: float) -> np.ndarray:
        """r with each layer's tail cut where its running mass passes
        m_j = max(1, mass(j) * exp(-tau * j)); tau = 0 leaves r as it is."""
        r = r.astype(np.float64)
        masses = r.sum(axis=1, keepdims=True)
        kept = np.minimum(masses, np.maximum(1.0, masses * np.exp(-tau * self.weights)))
        before = np.cumsum(r, axis=1) - r  # mass of the more significant ranks
        return np.clip(kept - before, 0.0, r).astype(np.float32)

    def project(self, r: np.ndarray, required: float) -> tuple[np.ndarray, float]:
        """The least truncation of `r` whose read-out reaches `required`; (r', tau)."""
        if self.bound(r, MASS_MARGIN) >= required:
            return r, 0.0
        low, high = 0.0, float(np.log(r.shape[1])) + 1.0  # high: every m_j at 1
        for _ in range(BISECTION_STEPS):
            middle = (low + high) / 2
            if self.bound(self._shrink(r, middle), MASS_MARGIN) >= required:
                high = middle
            else:
                low = middle
        return self._shrink(r, high), high

    def after_step(self, step: int) -> ControllerState:
        """Enforces the budget of `step` on the variables; returns what it did."""
        r = np.stack([np.asarray(v, dtype=np.float32) for v in self.variables])
        required = budget(step, self.total_steps, self.target, self.ramp)
        projected, tau = self.project(r, required)
        if tau > 0:
            for variable, row in zip(self.variables, projected):
                variable.assign(row)
        state = ControllerState(step, required, self.bound(projected), tau)
        self.trajectory.append(state)
        return state

    def restore_trajectory(self, saved: list[dict], last_step: int) -> None:
        """Keeps a resumed run's record of the steps before `last_step` (inclusive)."""
        self.trajectory = [ControllerState(**s) for s in saved if s["step"] <= last_step]


# -- The relative mode: the bound over length-bucketed plain BERT ----------------------

def bucket_rows(batches: Iterable[tuple[Sized, int]]) -> list[tuple[int, int]]:
    """`data.buckets.served_batches`' (row indices, bucket) pairs -> (rows, bucket) per
    bucket: what `served_flop_bound` needs, summed once (the bound is linear in rows)."""
    rows: dict[int, int] = {}
    for indices, bucket in batches:
        rows[int(bucket)] = rows.get(int(bucket), 0) + len(indices)
    return sorted((count, bucket) for bucket, count in rows.items())


def largest_served_speedup(config: EncoderConfig, sequence_length: int,
                           batches: Sequence[tuple[int, int]]) -> float:
    """The served FLOP bound of every layer keeping only [CLS] in every bucket."""
    smallest = RelativeRetention((1 / FRACTION_SCALE,) * config.num_layers, sequence_length)
    return served_flop_bound(config, smallest, batches)


def check_served_reachable(config: EncoderConfig, sequence_length: int, target: float,
                           batches: Sequence[tuple[int, int]]) -> None:
    """`check_reachable` of the relative mode: the bound over length-bucketed plain BERT."""
    largest = largest_served_speedup(config, sequence_length, batches)
    if target > largest:
        raise PowerBertError(
            f"--target_speedup={target:g} cannot be reached: the largest FLOP-bound speed-up "
            f"over length-bucketed plain BERT of this {config.num_layers}-layer model on the "
            f"task's lengths at --max_seq_length={sequence_length} is {largest:.2f}x (every "
            f"layer keeping only [CLS])")


class RelativeSpeedupController(SpeedupController):
    """`SpeedupController` of the relative mode: the read-out is f_j = mass(j) / N and
    the bound it steers to is the FLOP bound over length-bucketed plain BERT on the
    given batches (`served_flop_bound`: in a bucket b, layer j processes K_j(b) =
    ceil(f_j * b) vectors), so the target is in the units a user serves in.

    Args:
        batches: (rows, bucket) of the served batches (`bucket_rows`), e.g. the task's
            training lengths through the buckets of N, sorted by length.
        Others: as `SpeedupController`.
    """

    def __init__(self, config: EncoderConfig, retention_variables: Sequence,
                 sequence_length: int, target: float, total_steps: int, ramp: float,
                 batches: Sequence[tuple[int, int]]):
        self.batches = list(batches)
        check_served_reachable(config, sequence_length, target, self.batches)
        super().__init__(config, retention_variables, sequence_length, target, total_steps,
                         ramp)

    def bound(self, r: np.ndarray, margin: float = 0.0) -> float:
        masses = r.astype(np.float64).sum(axis=1) + margin
        retention = RelativeRetention.from_masses(masses, self.sequence_length)
        return served_flop_bound(self.config, retention, self.batches)

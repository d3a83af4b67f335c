"""What one layer call draws (training) or averages (evaluation); no triton import here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Noise:
    """What a layer call draws or averages. Rates reach the kernels as float32 scalars."""

    zoneout_cell: float
    zoneout_hidden: float
    recurrent_dropout: float
    shared_mask: bool
    training: bool

    @property
    def hidden_rate(self) -> float:
        # A shared mask is the cell mask, so its rate (and its expectation at eval) is z_c.
        return self.zoneout_cell if self.shared_mask else self.zoneout_hidden

    @property
    def use_dropout(self) -> bool:
        return self.training and self.recurrent_dropout > 0.0

    @property
    def random(self) -> bool:
        return self.training and (
            self.zoneout_cell > 0.0 or self.hidden_rate > 0.0 or self.recurrent_dropout > 0.0
        )

    def kernel_args(self) -> tuple[float, float, float, float]:
        p = self.recurrent_dropout if self.use_dropout else 0.0
        # p = 1 drops every g (u >= 1 never holds); scale 0 keeps the arithmetic finite.
        return self.zoneout_cell, self.hidden_rate, p, 0.0 if p >= 1.0 else 1.0 / (1.0 - p)

    def kernel_flags(self) -> dict[str, bool]:
        return {
            "RANDOM": self.random,
            "USE_ZC": self.zoneout_cell > 0.0,
            "USE_ZH": self.hidden_rate > 0.0,
            "USE_DROP": self.use_dropout,
            "SHARED": self.shared_mask,
        }

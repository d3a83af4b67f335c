"""Forward+backward time of one sequence: nn.LSTM vs an LSTMCell zoneout loop vs ZoneoutLSTM.

    .venv/bin/python benchmarks/zoneout_speed.py [--device cuda] [--repeats N] [--quick]

T=100, B=32, input 128, hidden 256 and 1000. Every variant is timed in the same process and
the rounds are interleaved (one run of each variant per round), so background load hits all of
them alike; the ratio to nn.LSTM (zoneout-free, the floor) is the number that matters.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

try:
    from trials.zoneout import ZoneoutLSTM
except ImportError:  # run as a script from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from trials.zoneout import ZoneoutLSTM

STEPS, BATCH, INPUT = 100, 32, 128
HIDDEN_SIZES = (256, 1000)
Z_CELL, Z_HIDDEN = 0.5, 0.05


class CellLoopZoneoutLSTM(nn.Module):
    """The common recipe (ESPnet's ZoneOutCell, fairseq-style loops): LSTMCell per step + masks."""

    def __init__(self, input_size: int, hidden_size: int, z_c: float, z_h: float) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.z_c, self.z_h = z_c, z_h

    def forward(self, x: Tensor) -> Tensor:
        h = x.new_zeros(x.shape[1], self.cell.hidden_size)
        c = torch.zeros_like(h)
        outs = []
        for xt in x:
            h_new, c_new = self.cell(xt, (h, c))
            m_h = torch.empty_like(h).bernoulli_(self.z_h)
            m_c = torch.empty_like(c).bernoulli_(self.z_c)
            h = m_h * h + (1 - m_h) * h_new
            c = m_c * c + (1 - m_c) * c_new
            outs.append(h)
        return torch.stack(outs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_fn(model: nn.Module, x: Tensor) -> Callable[[], None]:
    def step() -> None:
        out = model(x)
        if isinstance(out, tuple):
            out = out[0]
        out.sum().backward()
        model.zero_grad(set_to_none=True)
        x.grad = None

    return step


def bench(hidden: int, device: torch.device, repeats: int, warmup: int) -> list[tuple[str, float]]:
    x = torch.randn(STEPS, BATCH, INPUT, device=device, requires_grad=True)
    variants: dict[str, nn.Module] = {
        "nn.LSTM (no zoneout)": nn.LSTM(INPUT, hidden),
        "LSTMCell loop + zoneout": CellLoopZoneoutLSTM(INPUT, hidden, Z_CELL, Z_HIDDEN),
        "ZoneoutLSTM (train)": ZoneoutLSTM(
            INPUT, hidden, zoneout_cell=Z_CELL, zoneout_hidden=Z_HIDDEN
        ),
    }
    steps = {name: _step_fn(m.to(device).train(), x) for name, m in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(warmup):
        for step in steps.values():
            step()
    for _ in range(repeats):
        for name, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return [(name, statistics.median(ts) * 1e3) for name, ts in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds (median reported)")
    parser.add_argument("--quick", action="store_true", help="3 rounds, 1 warm-up: a smoke run")
    parser.add_argument(
        "--hidden", type=int, nargs="+", default=list(HIDDEN_SIZES), help="hidden sizes"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    repeats, warmup = (3, 1) if args.quick else (args.repeats, 2)
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"T={STEPS} B={BATCH} I={INPUT}, z_c={Z_CELL} z_h={Z_HIDDEN}, "
        f"forward+backward, median of {repeats} (warm-up {warmup})"
    )
    print(f"| {'variant':<26} | {'H':>5} | {'ms':>9} | {'x nn.LSTM':>9} |")
    print(f"|{'-' * 28}|{'-' * 6}:|{'-' * 10}:|{'-' * 10}:|")
    for hidden in args.hidden:
        rows = bench(hidden, device, repeats, warmup)
        floor = rows[0][1]
        for name, ms in rows:
            print(f"| {name:<26} | {hidden:>5} | {ms:>9.1f} | {ms / floor:>9.2f} |")


if __name__ == "__main__":
    main()

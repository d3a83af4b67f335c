"""Speed of ZoneoutLSTM against the vendor LSTM it replaces, forward+backward and a training step.

    python benchmarks/zoneout_speed.py [--device cpu|cuda] [--threads 1 2] [--rounds N] [--quick]

Needs only torch (triton optional): the layer is imported from this checkout by path, without
the service's other dependencies, so the script runs as is on a bare GPU machine.

In one process, for each shape: torch.nn.LSTM (oneDNN on CPU, cuDNN on GPU; no zoneout, the
floor), the nn.LSTMCell loop with zoneout masks that other toolkits use, and ZoneoutLSTM
(z_c=0.5, z_h=0.05), forward+backward in training mode. Shapes: T=100, B=32, I=128, H=256 and
H=1000; on GPU also B=128, H=1000 and the paper's char-PTB layer (one-hot input of 50
characters, H=1000, B=32, T=100), in fp32 and bf16. Then tokens/s of a whole PTB-char-like
training step (one-hot input, the layer, decoder, softmax cross-entropy, gradient clipping 1,
Adam) with nn.LSTM and with ZoneoutLSTM.

Rounds are paired: each round runs every variant once, in rotating order, so background load
hits all of them alike; the ratio reported is the median over rounds of (variant / nn.LSTM) in
the same round, the times are medians. On CPU the process CPU time is reported too: on a shared
machine it is the steadier measure for one thread (with two, it includes OpenMP's spinning).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
Z_CELL, Z_HIDDEN = 0.5, 0.05
CHARS = 50  # PTB-char's vocabulary (the paper's one-hot input)


def import_zoneout_lstm() -> type[nn.Module]:
    """trials.zoneout.ZoneoutLSTM from this checkout, without running trials/__init__.py
    (which pulls in the service's config stack)."""
    if "trials" not in sys.modules:
        package = types.ModuleType("trials")
        package.__path__ = [str(REPO / "trials")]
        sys.modules["trials"] = package
    return importlib.import_module("trials.zoneout").ZoneoutLSTM


ZoneoutLSTM = import_zoneout_lstm()


@dataclass(frozen=True)
class Shape:
    steps: int
    batch: int
    inputs: int
    hidden: int
    label: str = ""

    def __str__(self) -> str:
        name = f"T={self.steps} B={self.batch} I={self.inputs} H={self.hidden}"
        return f"{name} ({self.label})" if self.label else name


class CellLoopZoneoutLSTM(nn.Module):
    """The common recipe (ESPnet's ZoneOutCell, fairseq-style loops): LSTMCell per step + masks."""

    def __init__(self, input_size: int, hidden_size: int, z_c: float, z_h: float) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.z_c, self.z_h = z_c, z_h

    def forward(self, x: Tensor) -> tuple[Tensor, None]:
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
        return torch.stack(outs), None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timings:
    wall: list[float]
    cpu: list[float]


def paired_rounds(
    work: dict[str, Callable[[], None]], device: torch.device, rounds: int, warmup: int
) -> dict[str, Timings]:
    """Run every callable once per round, in rotating order; seconds per call."""
    names = list(work)
    for _ in range(warmup):
        for name in names:
            work[name]()
    _sync(device)
    times = {name: Timings([], []) for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            _sync(device)
            wall, cpu = time.perf_counter(), time.process_time()
            work[name]()
            _sync(device)
            times[name].wall.append(time.perf_counter() - wall)
            times[name].cpu.append(time.process_time() - cpu)
    return times


def _layers(shape: Shape) -> dict[str, nn.Module]:
    return {
        "nn.LSTM": nn.LSTM(shape.inputs, shape.hidden),
        "LSTMCell loop + zoneout": CellLoopZoneoutLSTM(
            shape.inputs, shape.hidden, Z_CELL, Z_HIDDEN
        ),
        "ZoneoutLSTM": ZoneoutLSTM(
            shape.inputs, shape.hidden, zoneout_cell=Z_CELL, zoneout_hidden=Z_HIDDEN
        ),
    }


def layer_work(shape: Shape, device: torch.device, dtype: torch.dtype, skip_loop: bool):
    x = torch.randn(shape.steps, shape.batch, shape.inputs, device=device, dtype=dtype)
    x.requires_grad_()
    work: dict[str, Callable[[], None]] = {}
    for name, module in _layers(shape).items():
        if skip_loop and name.startswith("LSTMCell"):
            continue
        module = module.to(device=device, dtype=dtype).train()

        def step(module: nn.Module = module) -> None:
            out = module(x)[0]
            out.float().sum().backward()
            module.zero_grad(set_to_none=True)
            x.grad = None

        work[name] = step
    return work


def train_step_work(shape: Shape, device: torch.device, dtype: torch.dtype):
    """A PTB-char training step: one-hot characters -> layer -> decoder -> CE -> clip -> Adam."""
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, CHARS, (shape.steps + 1, shape.batch), generator=gen).to(device)
    work: dict[str, Callable[[], None]] = {}
    for name, layer in (
        ("nn.LSTM", nn.LSTM(CHARS, shape.hidden)),
        (
            "ZoneoutLSTM",
            ZoneoutLSTM(CHARS, shape.hidden, zoneout_cell=Z_CELL, zoneout_hidden=Z_HIDDEN),
        ),
    ):
        decoder = nn.Linear(shape.hidden, CHARS)
        model = nn.ModuleDict({"rnn": layer, "decoder": decoder}).to(device=device, dtype=dtype)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

        def step(
            model: nn.ModuleDict = model, optimizer: torch.optim.Optimizer = optimizer
        ) -> None:
            inputs = F.one_hot(tokens[:-1], CHARS).to(dtype)
            hidden, _ = model["rnn"](inputs)
            logits = model["decoder"](hidden)
            loss = F.cross_entropy(logits.float().flatten(0, 1), tokens[1:].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()

        work[name] = step
    return work


def _median_ratio(values: list[float], floor: list[float]) -> float:
    return statistics.median(v / f for v, f in zip(values, floor, strict=True))


def report(title: str, times: dict[str, Timings], device: torch.device, tokens: int = 0) -> None:
    floor = times["nn.LSTM"]
    print(f"\n{title}")
    if tokens:
        print("| variant | ms | tokens/s | x nn.LSTM time |")
        print("|---|--:|--:|--:|")
    elif device.type == "cpu":
        print("| variant | wall ms | x nn.LSTM | cpu ms | x nn.LSTM (cpu) |")
        print("|---|--:|--:|--:|--:|")
    else:
        print("| variant | ms | x nn.LSTM |")
        print("|---|--:|--:|")
    for name, t in times.items():
        ms = statistics.median(t.wall) * 1e3
        ratio = _median_ratio(t.wall, floor.wall)
        if tokens:
            print(f"| {name} | {ms:.1f} | {tokens / (ms / 1e3):,.0f} | {ratio:.2f} |")
        elif device.type == "cpu":
            cpu_ms = statistics.median(t.cpu) * 1e3
            cpu_ratio = _median_ratio(t.cpu, floor.cpu)
            print(f"| {name} | {ms:.1f} | {ratio:.2f} | {cpu_ms:.1f} | {cpu_ratio:.2f} |")
        else:
            print(f"| {name} | {ms:.2f} | {ratio:.2f} |")


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    what = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    extra = ""
    try:
        import triton  # type: ignore[import-not-found]

        extra = f", triton {triton.__version__}"
    except ImportError:
        pass
    return f"torch {torch.__version__}{extra}, {device.type}: {what}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument(
        "--device", default=default_device, help="cpu or cuda (default: %(default)s)"
    )
    parser.add_argument(
        "--threads", type=int, nargs="+", default=None, help="torch CPU threads, one run each"
    )
    parser.add_argument("--rounds", type=int, default=7, help="paired rounds (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="3 rounds, 1 warm-up, no cell loop")
    parser.add_argument("--hidden", type=int, nargs="+", default=None, help="only these H")
    parser.add_argument("--no-train-step", action="store_true", help="skip the tokens/s part")
    parser.add_argument("--no-cell-loop", action="store_true", help="skip the LSTMCell loop")
    args = parser.parse_args()
    device = torch.device(args.device)
    rounds, warmup = (3, 1) if args.quick else (args.rounds, args.warmup)
    skip_loop = args.quick or args.no_cell_loop

    shapes = [Shape(100, 32, 128, 256), Shape(100, 32, 128, 1000)]
    dtypes = [torch.float32]
    if device.type == "cuda":
        shapes += [Shape(100, 128, 128, 1000), Shape(100, 32, CHARS, 1000, "char-PTB")]
        dtypes.append(torch.bfloat16)
        torch.backends.cudnn.benchmark = True
    if args.hidden:
        shapes = [s for s in shapes if s.hidden in args.hidden]
    train_shapes = [Shape(100, 32, CHARS, h, "char-PTB step") for h in (args.hidden or [1000])]

    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        print(
            f"# {describe(device)}; {torch.get_num_threads()} torch threads; z_c={Z_CELL} "
            f"z_h={Z_HIDDEN}; {rounds} paired rounds (warm-up {warmup}); medians"
        )
        for dtype in dtypes:
            for shape in shapes:
                torch.manual_seed(0)
                work = layer_work(shape, device, dtype, skip_loop)
                try:
                    times = paired_rounds(work, device, rounds, warmup)
                except (RuntimeError, NotImplementedError) as error:  # e.g. a dtype a kernel lacks
                    print(f"\nforward+backward, {shape}, {dtype}: not run ({error})")
                    continue
                report(f"forward+backward, {shape}, {dtype}", times, device)
            for shape in [] if args.no_train_step else train_shapes:
                torch.manual_seed(0)
                times = paired_rounds(train_step_work(shape, device, dtype), device, rounds, warmup)
                report(
                    f"training step, {shape}, {dtype}",
                    times,
                    device,
                    tokens=shape.steps * shape.batch,
                )


if __name__ == "__main__":
    main()

"""GPU check of the Triton zoneout LSTM: correctness on CUDA, then its speed against cuDNN.

    python benchmarks/gpu_triton_check.py [--rounds N] [--skip-timing]

Needs only torch (CUDA build) and triton; run from the repository root (or anywhere: it finds
the checkout from its own path). Meant to take a few minutes on one GPU (not yet run on
one). Without triton it says so and
exits 2 (nothing imports triton before that check).

1. Correctness, small sizes (T=20, B=8, I=32, H=64), fp32 and bf16, forward and all seven
   gradients: the layer against an autograd loop fed the layer's own masks (`zoneout_masks`),
   in training (separate and shared masks, with recurrent dropout), at eval (the expectation),
   and with every rate 0 against cuDNN's nn.LSTM; the CUDA-graph replay against the eager loop,
   and a second replay with a new seed against that seed's masks. TF32 is off for these. bf16
   rows are skipped, with a note, on a GPU without bf16 (torch.cuda.is_bf16_supported()).
2. Timing, fp32, forward+backward of one sequence (T=100, I=128, H=1000, B=32 and 128): cuDNN
   nn.LSTM vs the Triton layer in training (z_c=0.5, z_h=0.05) with CUDA graphs and without,
   interleaved rounds in one process, median per variant, ratio to cuDNN. Timed under torch's
   defaults (cuDNN may use TF32 for fp32, torch.mm may not) and with TF32 allowed for both.
   bf16 rows are printed for information.
Exit status 1 if a correctness check fails.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]


def _import_layer() -> types.ModuleType:
    """trials.zoneout._triton_lstm, even where the service's dependencies are not installed."""
    try:
        return importlib.import_module("trials.zoneout._triton_lstm")
    except ImportError:
        pass
    # trials/__init__.py imports the trial config (pydantic, yaml...): register bare parent
    # packages instead, so only torch and triton are needed.
    for name in [m for m in sys.modules if m == "trials" or m.startswith("trials.")]:
        del sys.modules[name]
    for name, path in (("trials", ROOT / "trials"), ("trials.zoneout", ROOT / "trials/zoneout")):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package
    return importlib.import_module("trials.zoneout._triton_lstm")


tri = _import_layer()  # imports no triton: the layer's package loads it at the first run
graphs: types.ModuleType  # ...._triton_lstm.graphs, imported by main() once triton is there

FAILURES: list[str] = []
DEVICE = torch.device("cuda")  # --device cpu runs part 1 under TRITON_INTERPRET=1 (a dry run)


def check(name: str, ok: bool, detail: str) -> None:
    print(f"  {'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not ok:
        FAILURES.append(name)


# ------------------------------------------------------------------------------- correctness


def params(
    steps: int, batch: int, inputs: int, hidden: int, dtype: torch.dtype, seed: int = 0
) -> list[Tensor]:
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    shapes = [(steps, batch, inputs), (batch, hidden), (batch, hidden), (4 * hidden, inputs),
              (4 * hidden, hidden), (4 * hidden,), (4 * hidden,)]  # fmt: skip
    scale = 1.0 / hidden**0.5
    out = []
    for k, shape in enumerate(shapes):
        value = torch.randn(*shape, generator=gen, device=DEVICE)
        value = value * (scale * 2 if k >= 3 else 0.7)
        out.append(value.to(dtype).requires_grad_())
    return out


def reference(
    ps: list[Tensor], d_c: Tensor | float, d_h: Tensor | float, g_scale: Tensor | float
) -> tuple[Tensor, Tensor, Tensor]:
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = ps

    def pick(mask: Tensor | float, t: int) -> Tensor | float:
        return mask[t] if isinstance(mask, Tensor) else mask

    h, c, outs = h0, c0, []
    for t in range(x.shape[0]):
        i, f, g, o = (F.linear(x[t], w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, 1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c_new = f * c + i * g * pick(g_scale, t)
        h_new = o * torch.tanh(c_new)
        c = pick(d_c, t) * c + (1 - pick(d_c, t)) * c_new
        h = pick(d_h, t) * h + (1 - pick(d_h, t)) * h_new
        outs.append(h)
    return torch.stack(outs), h, c


def grads(outputs: tuple[Tensor, ...], inputs: list[Tensor]) -> list[Tensor]:
    gen = torch.Generator(device=DEVICE).manual_seed(123)
    cot = [torch.randn(o.shape, generator=gen, device=DEVICE).to(o.dtype) for o in outputs]
    return list(torch.autograd.grad(outputs, inputs, cot))


def rel_error(got: list[Tensor], want: list[Tensor]) -> float:
    """Largest max|a-b| / max|b| over the tensors."""
    worst = 0.0
    for a, b in zip(got, want, strict=True):
        a, b = a.detach().double(), b.detach().double()
        scale = float(b.abs().max()) or 1.0
        worst = max(worst, float((a - b).abs().max()) / scale)
    return worst


def run_layer(ps: list[Tensor], **kw: object) -> tuple[Tensor, Tensor, Tensor]:
    return tri.triton_lstm_layer(*ps, **kw)


def dtypes() -> list[torch.dtype]:
    """float32, and bfloat16 where the device has it (pre-Ampere GPUs do not)."""
    if DEVICE.type == "cuda" and not torch.cuda.is_bf16_supported():
        print("  note: this GPU has no bfloat16 support, bf16 checks and timings are skipped")
        return [torch.float32]
    return [torch.float32, torch.bfloat16]


def correctness() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    steps, batch, inputs, hidden = 20, 8, 32, 64
    tol = {torch.float32: 2e-5, torch.bfloat16: 4e-2}
    for dtype in dtypes():
        print(f"correctness, {dtype}, T={steps} B={batch} I={inputs} H={hidden}")
        ps = params(steps, batch, inputs, hidden, dtype)
        ref_ps = [p.detach().double().requires_grad_() for p in ps]
        cases = [
            ("train separate masks, p=0.5", 0.5, 0.05, 0.5, False, True),
            ("train shared mask, p=0.25", 0.25, 0.9, 0.25, True, True),
            ("eval, p=0.5 (identity)", 0.5, 0.05, 0.5, False, False),
        ]
        for label, zc, zh, p, shared, training in cases:
            for seed in (1234, 99):  # eager, then captured (second sighting) and replayed, new seed
                kw = {"zoneout_cell": zc, "zoneout_hidden": zh, "recurrent_dropout": p,
                      "shared_mask": shared, "training": training, "seed": seed}  # fmt: skip
                got = run_layer(ps, **kw)
                if training:
                    d_c, d_h, keep = tri.zoneout_masks(
                        seed, steps, batch, hidden, zoneout_cell=zc, zoneout_hidden=zh,
                        recurrent_dropout=p, shared_mask=shared, device=DEVICE,
                    )  # fmt: skip
                    want = reference(ref_ps, d_c.double(), d_h.double(), keep.double() / (1 - p))
                else:
                    want = reference(ref_ps, zc, zc if shared else zh, 1.0)
                fwd = rel_error(list(got), list(want))
                bwd = rel_error(grads(got, ps), grads(want, ref_ps))
                check(f"{label}, seed {seed}", max(fwd, bwd) < tol[dtype],
                      f"forward rel err {fwd:.2e}, gradients {bwd:.2e}")  # fmt: skip
        # Graph replay vs the eager loop, same call.
        kw = {"zoneout_cell": 0.5, "zoneout_hidden": 0.05, "recurrent_dropout": 0.5,
              "shared_mask": False, "training": True, "seed": 7}  # fmt: skip
        with_graph = run_layer(ps, **kw)
        g_graph = grads(with_graph, ps)
        graphs.ENABLED = False
        eager = run_layer(ps, **kw)
        g_eager = grads(eager, ps)
        graphs.ENABLED = True
        err = rel_error(list(with_graph) + g_graph, list(eager) + g_eager)
        check("CUDA graph == eager loop", err < 1e-6, f"rel err {err:.2e}")
        again = run_layer(ps, **kw)
        same = all(torch.equal(a, b) for a, b in zip(again, with_graph, strict=True))
        check("same seed reproduces", same, "bitwise equal outputs")
        # Every rate 0: nn.LSTM (cuDNN).
        lstm = nn.LSTM(inputs, hidden).to(DEVICE, dtype)
        with torch.no_grad():
            for name, value in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"),
                                   ps[3:], strict=True):  # fmt: skip
                getattr(lstm, name).copy_(value)
        x, h0, c0 = ps[:3]
        out, (h_n, c_n) = lstm(x, (h0.unsqueeze(0), c0.unsqueeze(0)))
        want = (out, h_n[0], c_n[0])
        got = run_layer(ps, zoneout_cell=0.0, zoneout_hidden=0.0, recurrent_dropout=0.0,
                        shared_mask=False, training=True, seed=0)  # fmt: skip
        fwd = rel_error(list(got), list(want))
        bwd = rel_error(grads(got, ps), grads(want, [x, h0, c0, *lstm.parameters()]))
        check("all rates 0 == cuDNN nn.LSTM", max(fwd, bwd) < tol[dtype],
              f"forward rel err {fwd:.2e}, gradients {bwd:.2e}")  # fmt: skip
    captured = (len(graphs._forward_graphs), len(graphs._backward_graphs))
    check("no failed CUDA-graph capture", not graphs._failed, f"{len(graphs._failed)} failed")
    if DEVICE.type == "cuda":
        check("graphs in use", min(captured) > 0, f"{captured} forward/backward cached")


# ------------------------------------------------------------------------------------ timing


def timed(fn: Callable[[], None]) -> float:
    # Wall time between two device syncs: what a training step waits for.
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def timing(rounds: int) -> None:
    steps, inputs, hidden = 100, 128, 1000
    settings = [("torch defaults", None), ("TF32 allowed for both", True)]
    for dtype in dtypes():
        for batch in (32, 128):
            for setting, tf32 in settings:
                if dtype == torch.bfloat16 and tf32 is not None:
                    continue  # TF32 does not apply to bf16
                if tf32 is None:
                    torch.backends.cuda.matmul.allow_tf32 = False
                    torch.backends.cudnn.allow_tf32 = True
                else:
                    torch.backends.cuda.matmul.allow_tf32 = tf32
                    torch.backends.cudnn.allow_tf32 = tf32
                time_one(steps, batch, inputs, hidden, dtype, setting, rounds)


def time_one(
    steps: int, batch: int, inputs: int, hidden: int, dtype: torch.dtype, setting: str, rounds: int
) -> None:
    graphs.clear()  # this shape gets its own graphs, captured under this round's settings
    ps = params(steps, batch, inputs, hidden, dtype)
    x, h0, c0 = ps[:3]
    lstm = nn.LSTM(inputs, hidden).to(DEVICE, dtype)
    lstm_inputs = [x, *lstm.parameters()]
    layer_inputs = [x, *ps[3:]]

    def cudnn() -> None:
        out, (h_n, _) = lstm(x, (h0.unsqueeze(0), c0.unsqueeze(0)))
        torch.autograd.grad(out.float().sum() + h_n.float().sum(), lstm_inputs)

    def triton_layer(use_graphs: bool) -> Callable[[], None]:
        def run() -> None:
            graphs.ENABLED = use_graphs
            seed = int(torch.randint(0, 2**62, (1,)).item())  # CPU generator: no GPU sync
            out, h_n, _ = tri.triton_lstm_layer(
                *ps, zoneout_cell=0.5, zoneout_hidden=0.05, recurrent_dropout=0.0,
                shared_mask=False, training=True, seed=seed,
            )  # fmt: skip
            torch.autograd.grad(out.float().sum() + h_n.float().sum(), layer_inputs)
            graphs.ENABLED = True

        return run

    variants = {
        "cuDNN nn.LSTM": cudnn,
        "Triton, CUDA graphs": triton_layer(True),
        "Triton, eager loop": triton_layer(False),
    }
    for fn in variants.values():  # compile, capture, autotune cuBLAS/cuDNN
        for _ in range(3):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            samples[name].append(timed(fn))
    captured = (len(graphs._forward_graphs), len(graphs._backward_graphs))
    if captured != (1, 1):
        print(f"  note: {captured} forward/backward graphs captured, expected (1, 1)")
    base = statistics.median(samples["cuDNN nn.LSTM"])
    dt = str(dtype).removeprefix("torch.")
    print(f"T={steps} B={batch} I={inputs} H={hidden} {dt}, {setting}, fwd+bwd, "
          f"median of {rounds} interleaved rounds:")  # fmt: skip
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"  {name:<22} {median * 1e3:8.2f} ms   {median / base:5.2f}x cuDNN")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run under TRITON_INTERPRET=1")
    args = parser.parse_args()
    global DEVICE, graphs
    DEVICE = torch.device(args.device)
    if importlib.util.find_spec("triton") is None:
        print("needs triton (pip install triton); torch alone cannot run the Triton layer")
        return 2
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        print("needs a CUDA device (torch sees none); --device cpu is a dry run")
        return 2
    if DEVICE.type != "cuda" and not os.environ.get("TRITON_INTERPRET"):
        print("off CUDA the kernels run only under TRITON_INTERPRET=1")
        return 2
    import triton

    graphs = importlib.import_module("trials.zoneout._triton_lstm.graphs")

    warnings.simplefilter("always")
    name = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "CPU (Triton interpreter)"
    print(f"device: {name}, torch {torch.__version__}, "
          f"triton {triton.__version__}, cuDNN {torch.backends.cudnn.version()}")  # fmt: skip
    started = time.perf_counter()
    correctness()
    print(f"correctness: {len(FAILURES)} failed ({time.perf_counter() - started:.0f} s)")
    if not args.skip_timing and DEVICE.type == "cuda":
        timing(args.rounds)
    print(f"total {time.perf_counter() - started:.0f} s")
    print("ALL CHECKS PASSED" if not FAILURES else f"FAILED: {', '.join(FAILURES)}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())

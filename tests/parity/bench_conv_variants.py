"""OpenL3's eight 3×3 convolutions (mel256, 10 frames: one cached hop) timed per layer in
the float32 variants libtorch offers on the CPU, with their error against float64:

- blocked: oneDNN's blocked tensors (`to_mkldnn`, weights reordered once): avscene's path;
- channels-last: oneDNN's NHWC (brgemm) convolutions;
- Winograd F(2×2,3×3) and F(4×4,3×3) built from libtorch's GEMMs: the input tiles
  transformed by one GEMM, one batched GEMM per tile position, the output transformed by
  one GEMM (channels-last in and out).

    python3 tests/parity/bench_conv_variants.py [THREADS]

with a Python that has torch (e.g. .deps/peers-venv/bin/python, which
scripts/bench-peers.sh makes).

Each figure is the best of three runs, ReLU included.
"""
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
torch.set_grad_enabled(False)
torch.manual_seed(0)
FRAMES = 10
# (in, out, mel bands, STFT frames) of each convolution: src/model/openl3.rs conv_plan,
# then the embedding layer.
LAYERS = [(1, 64, 256, 199), (64, 64, 256, 199), (64, 128, 128, 99), (128, 128, 128, 99),
          (128, 256, 64, 49), (256, 256, 64, 49), (256, 512, 32, 24), (512, 512, 32, 24)]


def winograd_matrices(m):
    """Lavin & Gray's B^T, G, A^T for F(m×m, 3×3)."""
    t = lambda rows: torch.tensor(rows, dtype=torch.float64)
    if m == 2:
        return (t([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]),
                t([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]),
                t([[1, 1, 1, 0], [0, 1, -1, -1]]))
    return (t([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]),
            t([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]),
            t([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]))


class Winograd:
    """A 3×3, padding 1 convolution + ReLU by F(m×m, 3×3) on (N, H, W, C) tensors."""

    def __init__(self, weight, bias, m):
        bt, g, at = winograd_matrices(m)
        self.m, self.a, self.k = m, m + 2, weight.shape[0]
        u = torch.einsum("ij,kcjl,ml->imkc", g, weight.double(), g)  # a, a, K, C
        self.u = u.reshape(self.a ** 2, self.k, -1).transpose(1, 2).contiguous().float()
        self.bt2 = torch.kron(bt, bt).float()  # a², a²: both sides of B^T d B at once
        self.at2 = torch.kron(at, at).float()  # m², a²
        self.bias = bias

    def __call__(self, x):
        n, h, w, c = x.shape
        m, a = self.m, self.a
        th, tw = -(-h // m), -(-w // m)
        xp = F.pad(x, (0, 0, 1, tw * m + 1 - w, 1, th * m + 1 - h))
        hp, wp = xp.shape[1:3]
        tiles = xp.as_strided((a, a, n, th, tw, c), (wp * c, c, hp * wp * c, m * wp * c, m * c, 1))
        p = n * th * tw
        v = (self.bt2 @ tiles.reshape(a * a, p * c)).view(a * a, p, c)
        mm = torch.bmm(v, self.u)  # a², P, K
        y = (self.at2 @ mm.view(a * a, p * self.k)).view(m, m, n, th, tw, self.k)
        y = y.permute(2, 3, 0, 4, 1, 5).reshape(n, th * m, tw * m, self.k)[:, :h, :w]
        return (y + self.bias).relu_()


def best_ms(f, runs=3):
    f()
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - started)
    return best * 1000


totals = {}
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {FRAMES} frames")
print(f"{'layer':>22}  " + "  ".join(f"{v:>22}" for v in ["blocked", "channels-last", "F(2,3)", "F(4,3)"]))
for c_in, c_out, h, w in LAYERS:
    x = torch.randn(FRAMES, c_in, h, w).relu()
    weight = torch.randn(c_out, c_in, 3, 3) / (3 * c_in ** 0.5)
    bias = torch.randn(c_out) * 0.1
    exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=1).relu()
    scale = exact.abs().max()
    blocked_x = x.to_mkldnn()
    blocked_w = torch.ops.aten.mkldnn_reorder_conv2d_weight(weight.to_mkldnn(), [1, 1], [1, 1], [1, 1], 1)
    last_x = x.contiguous(memory_format=torch.channels_last)
    last_w = weight.contiguous(memory_format=torch.channels_last)
    nhwc = x.permute(0, 2, 3, 1).contiguous()
    f2, f4 = Winograd(weight, bias, 2), Winograd(weight, bias, 4)
    variants = {
        "blocked": (lambda: torch.ops.aten.mkldnn_convolution(
            blocked_x, blocked_w, bias, [1, 1], [1, 1], [1, 1], 1).relu_(), lambda y: y.to_dense()),
        "channels-last": (lambda: F.conv2d(last_x, last_w, bias, padding=1).relu_(), lambda y: y),
        "F(2,3)": (lambda: f2(nhwc), lambda y: y.permute(0, 3, 1, 2)),
        "F(4,3)": (lambda: f4(nhwc), lambda y: y.permute(0, 3, 1, 2)),
    }
    cells = []
    for name, (run, dense) in variants.items():
        ms = best_ms(run)
        error = ((dense(run()).double() - exact).abs().max() / scale).item()
        totals[name] = totals.get(name, 0.0) + ms
        cells.append(f"{ms:8.1f} ms err {error:.0e}")
    print(f"{c_in:>5} → {c_out:<4} @ {h:>3} × {w:<3}  " + "  ".join(f"{cell:>22}" for cell in cells), flush=True)
print(f"{'all eight':>22}  " + "  ".join(f"{totals[v]:>19.1f} ms" for v in totals))

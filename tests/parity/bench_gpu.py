"""avscene's model on a GPU: what one cached hop costs, and how many 1 s-hop streams one
GPU sustains at p99 latency < 250 ms. Written for a machine that has PyTorch with CUDA
and nothing else (no Rust toolchain, no GStreamer, no network), so it runs the same
architecture in PyTorch (reference.py, random weights) the way avscene's engine runs it on
CUDA (src/infer/engine.rs, src/model/): OpenL3 with its batch norms folded into its
convolutions, the kernel-convolution STFT, frames in even chunks of at most 8
(features::AUDIO_CHUNK), images likewise of at most 16 (IMAGE_CHUNK), the cached
embeddings stacked row by row per window, the head, softmax and the copy back, the inputs
copied from host memory.

1. Checks first: the folded OpenL3 equals the reference one (CPU), and the device's
   cached hop equals the CPU's in float32 within TF32's error (cuDNN's default, which
   libtorch and so avscene keep).
2. Times one worker batch of b windows (b streams' 1 s hops: 10 b new OpenL3 frames, b
   images, b head passes) for b up to 256, median of several, for three variants:
   `avscene` (what the daemon does today), `large-chunks` (128 frames / 64 images per
   call, cudnn.benchmark on: a change avscene could make) and `bf16` (that, under bf16
   autocast: not an avscene setting, there for planning).
   Then the avscene variant's worker batch taken apart by stage, at 1 and 64 hops on a
   GPU (as `avscene bench`'s stage table): the copy in, OpenL3's spectrograms, its
   convolution stack, the image branch, the head.
3. Replays N streams (random phases, one window per second each) through avscene's worker
   policy (src/infer/worker.rs: take the first waiting window, wait at most max_wait_ms
   for up to max_batch, run; queue of queue_capacity, oldest dropped) on a virtual clock
   whose batches last what step 2 measured, and finds the largest N with p99 < 250 ms and
   nothing dropped, for max_batch 8 (the default) to 256. The virtual clock skips the
   idle waits only; a final run checks it against real batches on the GPU.

    python3 tests/parity/bench_gpu.py [--device cuda] [--out DIR] [--budget-s 300]
    python3 tests/parity/bench_gpu.py --device cpu --quick     (a check of the script)

Prints a short table last; with --out, writes bench-gpu.json there.
"""
import argparse
import collections
import copy
import json
import math
import os
import platform
import random
import subprocess
import time

import torch
import torch.nn.functional as F

from reference import FULL, SMALL, SceneNet

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cuda")
parser.add_argument("--profile", choices=["full", "small"], default=None)
parser.add_argument("--out", default=None)
parser.add_argument("--budget-s", type=float, default=300.0, help="stop timing larger batches past this")
parser.add_argument("--quick", action="store_true", help="small profile, small batches: checks the script")
parser.add_argument("--p99-ms", type=float, default=None,
                    help="latency target (default 250; --quick on a CPU: 3000, so the replay has streams to find)")
parser.add_argument("--threads", type=int, default=0, help="CPU threads for the CPU reference (0: PyTorch's)")
args = parser.parse_args()

STARTED = time.perf_counter()
QUICK = args.quick
PROFILE = SMALL if (args.profile == "small" or (QUICK and args.profile is None)) else FULL
DEVICE = torch.device(args.device)
CUDA = DEVICE.type == "cuda"
BATCHES = [1, 2, 4] if QUICK else [1, 2, 4, 8, 16, 32, 64, 128, 256]
MAX_BATCHES = [2, 4] if QUICK else [8, 16, 32, 64, 128, 256]
DEFAULT_MAX_BATCH = MAX_BATCHES[0] if QUICK else 8
MAX_WAIT_S = 0.050  # inference.max_wait_ms default
QUEUE_CAPACITY = 1024  # inference.queue_capacity's upper bound (default 32)
P99_TARGET_S = (args.p99_ms if args.p99_ms is not None else 3000.0 if QUICK and not CUDA else 250.0) / 1000
SIM_SECONDS = 30 if QUICK else 60
FRAME = 48000  # samples per OpenL3 frame (1 s at 48 kHz)
HOP_FRAMES = 10  # new OpenL3 frames per 1 s hop (0.1 s apart)
WINDOW_FRAMES, WINDOW_IMAGES = 96, 10
IMAGE_MEAN, IMAGE_STD = (0.432, 0.413, 0.417), (0.231, 0.230, 0.231)
if args.threads > 0:
    torch.set_num_threads(args.threads)
torch.set_grad_enabled(False)
torch.manual_seed(0)
results = {"p99_target_ms": P99_TARGET_S * 1000, "profile": "full" if PROFILE is FULL else "small", "device": str(DEVICE), "torch": torch.__version__,
           "host": platform.node(), "python": platform.python_version()}


def log(*parts):
    print(f"[{time.perf_counter() - STARTED:6.1f} s]", *parts, flush=True)


def sync():
    if CUDA:
        torch.cuda.synchronize(DEVICE)


def gpu_facts():
    facts = {}
    if CUDA:
        p = torch.cuda.get_device_properties(DEVICE)
        facts = {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                 "multiprocessors": p.multi_processor_count, "cuda": torch.version.cuda,
                 "cudnn": torch.backends.cudnn.version(),
                 "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                 "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,"
                                  "temperature.gpu,power.draw", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            facts["nvidia_smi"] = out.stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            facts["nvidia_smi"] = f"unavailable: {e}"
    return facts


# --- the model as avscene's engine runs it -----------------------------------------
def fold_openl3(openl3):
    """OpenL3's seven conv + BN pairs folded into conv weights and biases, as
    src/model/openl3.rs does for eval (the input BN stays: it precedes a padded conv)."""
    folded = []
    for i in range(7):
        conv, bn = getattr(openl3, f"conv2d_{i + 1}"), getattr(openl3, f"batch_normalization_{i + 2}")
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale.view(-1, 1, 1, 1)
        bias = (conv.bias - bn.running_mean) * scale + bn.bias
        folded.append((weight.contiguous(), bias.contiguous()))
    return folded


class Engine:
    """One worker batch of cached hops, the way src/infer/engine.rs computes it."""

    def __init__(self, net, device, audio_chunk, image_chunk, autocast=None, channels_last=False):
        # channels-last reorders the weights in place: give that variant its own copy
        self.net = (copy.deepcopy(net) if channels_last else net).to(device).eval()
        self.device = device
        self.folded = fold_openl3(self.net.openl3)
        self.audio_chunk, self.image_chunk = audio_chunk, image_chunk
        self.autocast, self.channels_last = autocast, channels_last
        if channels_last:
            self.net.video.to(memory_format=torch.channels_last)
        self.mean = torch.tensor(IMAGE_MEAN, device=device).view(3, 1, 1)
        self.std = torch.tensor(IMAGE_STD, device=device).view(3, 1, 1)

    def openl3(self, frames):  # (N, 48000) -> (N, 512)
        return self.stack(self.spectrograms(frames))

    def spectrograms(self, frames):  # (N, 48000) -> (N, 1, 256, 199), through the input BN
        o = self.net.openl3
        return o.batch_normalization_1(o.speclayer(frames).unsqueeze(1))

    def stack(self, x):  # the folded convolutions and the embedding layer -> (N, 512)
        o = self.net.openl3
        for i, (weight, bias) in enumerate(self.folded):
            x = F.conv2d(x, weight, bias, padding=1).relu_()
            if i in (1, 3, 5):
                x = F.max_pool2d(x, 2)
        x = F.max_pool2d(o.audio_embedding_layer(x), (32, 24))
        return torch.flatten(x, 1)

    def images(self, frames):  # (N, 224, 224, 3) uint8 on the host -> normalised on the device
        x = frames.to(self.device).permute(0, 3, 1, 2).float() / 255.0
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _encode(self, fn, x, chunk):
        # the fewest chunks of at most `chunk`, as even as possible (model::even_chunks)
        count = max(1, -(-len(x) // chunk))
        sizes = [len(x) // count + (i < len(x) % count) for i in range(count)]
        if self.autocast is not None:
            with torch.autocast(self.device.type, dtype=self.autocast):
                return torch.cat([fn(c) for c in x.split(sizes)]).float()
        return torch.cat([fn(c) for c in x.split(sizes)])

    def batch(self, work):
        """work: host frames (10 b, 48000), host images (b, 224, 224, 3) uint8 and each
        window's cached rows (b lists of 86 OpenL3 rows, b lists of 9 image rows, on the
        device) -> (b, classes) probabilities on the host."""
        frames, pictures, audio_cache, image_cache = work
        audio_new = self._encode(self.openl3, frames.to(self.device), self.audio_chunk)
        image_new = self._encode(self.net.video, self.images(pictures), self.image_chunk)
        return self.head(audio_new, image_new, audio_cache, image_cache)

    def head(self, audio_new, image_new, audio_cache, image_cache):
        """The hop's new embeddings beside each window's cached rows -> (b, classes)
        probabilities on the host."""
        b = len(audio_cache)
        audio_rows, image_rows = [], []
        for w in range(b):  # per window, stack its 96 / 10 cached rows (Tensor::stack per window)
            new_audio = list(audio_new[w * HOP_FRAMES:(w + 1) * HOP_FRAMES].unbind(0))
            audio_rows.append(torch.stack(audio_cache[w] + new_audio))
            image_rows.append(torch.stack(image_cache[w] + [image_new[w]]))
        logits = self.net.head(torch.stack(audio_rows), torch.stack(image_rows))
        return torch.softmax(logits, dim=-1).cpu()


def make_work(b, device, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(FRAME, dtype=torch.float32) / FRAME
    tone = torch.sin(2 * math.pi * 440.0 * t)
    frames = (torch.randn(b * HOP_FRAMES, FRAME, generator=g) * 0.05 + 0.1 * tone).contiguous()
    pictures = torch.randint(0, 256, (b, 224, 224, 3), dtype=torch.uint8, generator=g)
    dim = PROFILE["dim"]
    audio_cache = [list(torch.randn(WINDOW_FRAMES - HOP_FRAMES, 512, generator=g).to(device).unbind(0))
                   for _ in range(b)]
    image_cache = [list(torch.randn(WINDOW_IMAGES - 1, dim, generator=g).to(device).unbind(0)) for _ in range(b)]
    return frames, pictures, audio_cache, image_cache


def relative(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-30)).item()


# --- 1. checks ------------------------------------------------------------------------
facts = gpu_facts()
results["gpu"] = facts
log("device:", DEVICE, facts.get("name", platform.processor() or "cpu"), "| torch", torch.__version__,
    "| profile", results["profile"])
net_cpu = SceneNet(PROFILE).eval()
with torch.no_grad():  # trained-looking BN statistics, so the folding is exercised
    for m in net_cpu.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
reference_engine = Engine(net_cpu, torch.device("cpu"), 8, 16)
probe = torch.randn(2, FRAME) * 0.1
folded_error = relative(reference_engine.openl3(probe), net_cpu.openl3(probe))
log(f"check: folded OpenL3 vs reference OpenL3 (CPU): relative error {folded_error:.2e}")
assert folded_error < 1e-4, "the folded OpenL3 does not equal the reference"
check_work = make_work(1, torch.device("cpu"), seed=1)
expected = reference_engine.batch(check_work)
expected_embeddings = reference_engine.openl3(check_work[0][:2])
net = SceneNet(PROFILE).eval()
net.load_state_dict(net_cpu.state_dict())
device_work = (check_work[0], check_work[1], [[r.to(DEVICE) for r in rows] for rows in check_work[2]],
               [[r.to(DEVICE) for r in rows] for rows in check_work[3]])
engine = Engine(net, DEVICE, 8, 16)
got = engine.batch(device_work)
embedding_error = relative(engine.openl3(check_work[0][:2].to(DEVICE)), expected_embeddings)
probability_error = (got - expected).abs().max().item()
log(f"check: {DEVICE} vs CPU float32: OpenL3 embeddings relative error {embedding_error:.2e}, "
    f"probabilities max difference {probability_error:.2e}")
results["checks"] = {"folded_openl3_relative_error": folded_error,
                     "device_embedding_relative_error": embedding_error,
                     "device_probability_max_difference": probability_error}
assert torch.isfinite(got).all() and embedding_error < 2e-2, "the device's result differs from the CPU's"
del net_cpu, reference_engine


# --- 2. one worker batch, timed -------------------------------------------------------
def time_batches(engine, b, budget_left):
    """Seconds per worker batch of b cached hops: a warm-up, then repeats (at least 5,
    about 2 s' worth, at most 30) over two input sets in turn."""
    works = [make_work(b, DEVICE, seed=10 + i) for i in range(2)]
    engine.batch(works[0])  # warm-up: cuDNN plans, allocator
    sync()
    start = time.perf_counter()
    engine.batch(works[1])
    sync()
    first = time.perf_counter() - start
    reps = int(min(30, max(5, 2.0 / max(first, 1e-6))))
    reps = max(3, min(reps, int(budget_left / max(first, 1e-6))))
    samples = [first]
    for i in range(reps - 1):
        sync()
        start = time.perf_counter()
        engine.batch(works[i % 2])
        sync()
        samples.append(time.perf_counter() - start)
    return sorted(samples)


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


GFLOP_PER_FRAME = 22.2 if PROFILE is FULL else None  # src/model/flops.rs (full profile)
GFLOP_PER_IMAGE = 8.2 if PROFILE is FULL else None
variants = [("avscene", dict(audio_chunk=8, image_chunk=16), False)]
variants.append(("large-chunks", dict(audio_chunk=128, image_chunk=64, channels_last=True), True))
if CUDA or not QUICK:
    variants.append(("bf16", dict(audio_chunk=128, image_chunk=64, channels_last=True, autocast=torch.bfloat16), True))
results["variants"] = {}
budget_end = STARTED + args.budget_s
for index, (name, options, benchmark) in enumerate(variants):
    # each variant gets an equal share of what is left of the budget
    variant_end = time.perf_counter() + (budget_end - time.perf_counter()) / (len(variants) - index)
    torch.backends.cudnn.benchmark = benchmark
    engine = Engine(net, DEVICE, **options)
    if options.get("autocast") is not None:
        got_bf16 = engine.batch(device_work)
        log(f"check: {name} vs CPU float32: probabilities max difference {(got_bf16 - expected).abs().max().item():.2e}")
    table = {}
    for b in BATCHES:
        left = variant_end - time.perf_counter()
        if left <= 0:
            log(f"{name}: the time budget is spent; batches from {b} on not timed")
            break
        try:
            samples = time_batches(engine, b, left)
        except torch.cuda.OutOfMemoryError:
            log(f"{name}: batch {b} ran out of GPU memory; larger batches not timed")
            torch.cuda.empty_cache()
            break
        table[b] = samples
        m = median(samples)
        rate = ""
        if GFLOP_PER_FRAME:
            rate = f", {b * (HOP_FRAMES * GFLOP_PER_FRAME + GFLOP_PER_IMAGE) / m / 1000:.2f} TFLOP/s"
        log(f"{name}: batch {b:>3}: median {m * 1000:8.2f} ms ({len(samples)} runs, "
            f"{m * 1000 / b:.2f} ms per hop{rate})")
    memory = torch.cuda.max_memory_allocated(DEVICE) / 2**30 if CUDA else None
    results["variants"][name] = {"options": {k: str(v) for k, v in options.items()},
                                 "cudnn_benchmark": benchmark, "batch_seconds": table,
                                 "peak_memory_gib": memory}
    del engine
    if CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(DEVICE)


# --- 2b. a worker batch by stage ------------------------------------------------------
def stage_times(b, reps):
    """A worker batch of b cached hops taken apart, as `avscene bench`'s stage table: the
    copy of the hop's frames and pictures to the device, OpenL3's spectrograms, its
    convolution stack, the image branch (normalising included), and the head with the
    cached rows and the copy back; each the median of `reps` after a warm-up, ms."""
    torch.backends.cudnn.benchmark = False
    engine = Engine(net, DEVICE, 8, 16)
    frames, pictures, audio_cache, image_cache = make_work(b, DEVICE, seed=50)
    frames_in, pictures_in = frames.to(DEVICE), pictures.to(DEVICE)
    stages = {
        "copy in": lambda: (frames.to(DEVICE), pictures.to(DEVICE)),
        "spectrograms": lambda: engine._encode(engine.spectrograms, frames_in, engine.audio_chunk),
        "openl3_convolutions": lambda: engine._encode(engine.stack, spectrograms, engine.audio_chunk),
        "image": lambda: engine._encode(engine.net.video, engine.images(pictures_in), engine.image_chunk),
        "head": lambda: engine.head(audio_new, image_new, audio_cache, image_cache),
    }
    # each stage's input, from the stage before it (the lambdas read these when called)
    spectrograms = stages["spectrograms"]()
    audio_new = stages["openl3_convolutions"]()
    image_new = stages["image"]()
    times = {}
    for name, run in stages.items():
        run()
        samples = []
        for _ in range(reps):
            sync()
            start = time.perf_counter()
            run()
            sync()
            samples.append(time.perf_counter() - start)
        times[name] = median(samples) * 1000
    return times


# src/model/flops.rs, full profile: per OpenL3 frame (spectrogram, convolutions), per image
STAGE_GFLOP = {"spectrograms": 1.78 * HOP_FRAMES, "openl3_convolutions": 20.41 * HOP_FRAMES, "image": 8.18}
results["stages"] = {}
# (on a CPU without --quick, batch 1 only: 64 full hops there take over a minute a run)
for b in ([1, 2] if QUICK else [1, 64] if CUDA else [1]):
    times = stage_times(b, 3 if QUICK else 20 if CUDA else 5)
    results["stages"][b] = times
    for name, ms in times.items():
        rate = ""
        if PROFILE is FULL and name in STAGE_GFLOP:
            rate = f", {b * STAGE_GFLOP[name] / ms:.2f} TFLOP/s"
        log(f"stages: batch {b:>3}: {name:<20} {ms:8.2f} ms ({ms / b:.2f} per hop{rate})")


# --- 3. streams through the worker's policy -------------------------------------------
class Service:
    """A batch of k windows lasts a measured sample for k, or between the two nearest
    measured sizes, interpolated (the same quantile of each)."""

    def __init__(self, table, rng):
        self.sizes = sorted(table)
        self.table, self.rng = table, rng

    def __call__(self, k):
        q = self.rng.random()
        pick = lambda b: self.table[b][min(len(self.table[b]) - 1, int(q * len(self.table[b])))]
        if k in self.table:
            return pick(k)
        below = max([b for b in self.sizes if b < k], default=self.sizes[0])
        above = min([b for b in self.sizes if b > k], default=None)
        if above is None:  # past the largest measured: per-window cost of the largest
            return pick(below) * k / below
        f = (k - below) / (above - below)
        return pick(below) * (1 - f) + pick(above) * f


def replay(n, max_batch, service, seconds=SIM_SECONDS, seed=0, max_wait=MAX_WAIT_S, capacity=QUEUE_CAPACITY):
    """src/infer/worker.rs on a virtual clock: returns latencies (ready → result) and
    what the bounded queue dropped. `service(k)` is a batch's duration."""
    rng = random.Random(seed)
    phases = sorted(rng.random() for _ in range(n))
    arrivals = [k + p for k in range(seconds) for p in phases]
    latencies, queue, dropped, peak, batches = [], collections.deque(), 0, 0, []
    t, i = 0.0, 0

    def admit(until):
        nonlocal i, dropped, peak
        while i < len(arrivals) and arrivals[i] <= until:
            queue.append(arrivals[i])
            i += 1
            if len(queue) > capacity:  # the capture side drops the oldest when full
                queue.popleft()
                dropped += 1
            peak = max(peak, len(queue))

    while i < len(arrivals) or queue:
        admit(t)
        if not queue:
            t = arrivals[i]
            continue
        start_wait = t
        batch = [queue.popleft()]
        deadline = start_wait + max_wait
        while len(batch) < max_batch:
            if queue:
                batch.append(queue.popleft())
                continue
            if i < len(arrivals) and arrivals[i] <= deadline:
                t = max(t, arrivals[i])
                admit(t)
                continue
            t = deadline  # recv_deadline waits out the deadline when nothing comes
            break
        took = service(len(batch))
        t += took
        batches.append(len(batch))
        latencies.extend(t - a for a in batch)
        admit(t)
    return latencies, dropped, peak, batches


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(math.ceil(p / 100 * len(xs))) - 1)] if xs else float("nan")


def sustained(table, max_batch):
    """The most streams with p99 under the target and nothing dropped (doubling, then bisection)."""
    service = Service(table, random.Random(1))

    def ok(n):
        latencies, dropped, _, _ = replay(n, max_batch, service)
        return percentile(latencies, 99) < P99_TARGET_S and dropped == 0

    if not ok(1):
        return 0
    low, high = 1, 2
    while ok(high):
        low, high = high, high * 2
        if high > 65536:
            return low
    while high - low > max(1, low // 50):
        mid = (low + high) // 2
        low, high = (mid, high) if ok(mid) else (low, mid)
    return low


log("replaying streams through the worker's batching policy")
summary = []
for name, record in results["variants"].items():
    table = record["batch_seconds"]
    if not table:
        continue
    record["streams"] = {}
    for max_batch in MAX_BATCHES:
        if max_batch > max(table):
            continue
        n = sustained(table, max_batch)
        lat, dropped, peak, batches = replay(max(n, 1), max_batch, Service(table, random.Random(2)), seed=3)
        record["streams"][max_batch] = {"streams": n, "p50_ms": percentile(lat, 50) * 1000,
                                        "p99_ms": percentile(lat, 99) * 1000, "peak_queue": peak,
                                        "mean_batch": sum(batches) / len(batches)}
        summary.append((name, max_batch, n, record["streams"][max_batch]))
        log(f"{name}: max_batch {max_batch:>3}: {n} streams; at {max(n, 1)}: p99 "
            f"{record['streams'][max_batch]['p99_ms']:.0f} ms, peak queue {peak}")

# The virtual clock against real batches: the default policy at the streams it found.
avscene_table = results["variants"]["avscene"]["batch_seconds"]
validation = None
if avscene_table and max(avscene_table) >= DEFAULT_MAX_BATCH:
    n = results["variants"]["avscene"]["streams"][DEFAULT_MAX_BATCH]["streams"]
    if n > 0:
        torch.backends.cudnn.benchmark = False
        engine = Engine(net, DEVICE, 8, 16)
        works = {}

        def real(k):
            if k not in works:
                works[k] = make_work(k, DEVICE, seed=100 + k)
                engine.batch(works[k])
            sync()
            start = time.perf_counter()
            engine.batch(works[k])
            sync()
            return time.perf_counter() - start

        seconds = 10 if QUICK else 20
        lat, dropped, peak, _ = replay(n, DEFAULT_MAX_BATCH, real, seconds=seconds, seed=5)
        simulated, _, _, _ = replay(n, DEFAULT_MAX_BATCH, Service(avscene_table, random.Random(4)),
                                    seconds=seconds, seed=5)
        validation = {"streams": n, "max_batch": DEFAULT_MAX_BATCH, "seconds": seconds,
                      "real_p99_ms": percentile(lat, 99) * 1000, "simulated_p99_ms": percentile(simulated, 99) * 1000,
                      "real_dropped": dropped}
        log(f"validation: {n} streams, max_batch {DEFAULT_MAX_BATCH}, {seconds} s with real batches: "
            f"p99 {validation['real_p99_ms']:.0f} ms (simulated {validation['simulated_p99_ms']:.0f} ms)")
results["validation"] = validation
results["gpu_after"] = gpu_facts().get("nvidia_smi")
results["seconds"] = time.perf_counter() - STARTED
if args.out:
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench-gpu.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)

print()
print(f"# {time.strftime('%Y-%m-%d')} {facts.get('name', 'cpu')}, torch {torch.__version__}, "
      f"profile {results['profile']}, random weights")
print("variant        batch  ms/batch  ms/hop")
for name, record in results["variants"].items():
    for b, samples in record["batch_seconds"].items():
        print(f"{name:<14} {b:>5} {median(samples) * 1000:9.2f} {median(samples) * 1000 / b:7.2f}")
print("avscene's worker batch by stage (ms per batch):")
print("batch  " + "  ".join(f"{name:>19}" for name in next(iter(results["stages"].values()))))
for b, times in results["stages"].items():
    print(f"{b:>5}  " + "  ".join(f"{ms:19.2f}" for ms in times.values()))
print(f"streams one device sustains at p99 < {P99_TARGET_S * 1000:.0f} ms, nothing dropped:")
print("variant        max_batch  streams  p50_ms  p99_ms  peak_queue  mean_batch")
for name, max_batch, n, s in summary:
    print(f"{name:<14} {max_batch:>9} {n:>8} {s['p50_ms']:7.0f} {s['p99_ms']:7.0f} {s['peak_queue']:>11} "
          f"{s['mean_batch']:11.1f}")
if validation:
    print(f"validation: {validation['streams']} streams, max_batch {validation['max_batch']}, real batches "
          f"p99 {validation['real_p99_ms']:.0f} ms vs simulated {validation['simulated_p99_ms']:.0f} ms")

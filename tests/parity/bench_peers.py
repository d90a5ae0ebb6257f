"""The peers of `avscene bench`'s cached hop, on the same architecture (reference.py,
random weights) and the same work: one stream-second = 10 OpenL3 frames + 1 ResNet50
image + the head over a 10 s window. PyTorch eager (its BatchNorms as they are, eval
mode) and ONNX Runtime (the same modules exported to ONNX; ORT folds and fuses what it
can and picks its own CPU layout), then ONNX Runtime with OpenL3 statically quantized to
int8 (per-channel weights, calibrated activations: the peer of avscene's
`inference.openl3_precision = "int8"`); on a CPU with bf16 instructions also PyTorch
eager with OpenL3 under bfloat16 autocast (the peer of "bfloat16"; ONNX Runtime's CPU
provider has no bfloat16 convolution). Run by scripts/bench-peers.sh.

    python tests/parity/bench_peers.py --threads 2 [--hops 5] [--json]
"""
import argparse
import json
import os
import tempfile
import time

import torch

from reference import FULL, SceneNet

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--hops", type=int, default=5)
parser.add_argument("--json", action="store_true")
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.set_grad_enabled(False)
torch.manual_seed(0)
net = SceneNet(FULL).eval()
frames = torch.randn(10, 48000) * 0.1
image = torch.randn(1, 3, 224, 224)
audio_emb = torch.randn(1, 96, 512)
image_emb = torch.randn(1, 10, FULL["dim"])


def timed(hop):
    hop()  # warm-up
    times = []
    for _ in range(args.hops):
        start = time.perf_counter()
        hop()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def report(peer, seconds):
    line = {"peer": peer, "threads": args.threads, "hop_s": seconds, "windows_per_s": 1 / seconds}
    if args.json:
        print(json.dumps(line))
    else:
        print(f"{peer:<28} {args.threads} threads: {seconds:.3f} s per cached hop = {1 / seconds:.3f} windows/s")


def eager_hop():
    net.openl3(frames)
    net.video(image)
    net.head(audio_emb, image_emb)


report(f"pytorch {torch.__version__.split('+')[0]} eager", timed(eager_hop))


def eager_bf16_hop():
    # OpenL3 under bfloat16 autocast: the peer of inference.openl3_precision = "bfloat16"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net.openl3(frames)
    net.video(image)
    net.head(audio_emb, image_emb)


if torch.ops.mkldnn._is_mkldnn_bf16_supported():  # the CPU has bf16 instructions
    report(f"pytorch {torch.__version__.split('+')[0]} eager bf16 OpenL3", timed(eager_bf16_hop))

try:
    import onnxruntime as ort
except ImportError:
    print("onnxruntime is not installed: no ONNX Runtime figure")
    raise SystemExit(0)


class Head(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, audio, images):
        return self.net.head(audio, images)


with tempfile.TemporaryDirectory() as tmp:
    sessions = []
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for name, module, inputs in [
        ("openl3", net.openl3, (frames,)),
        ("video", net.video, (image,)),
        ("head", Head(net), (audio_emb, image_emb)),
    ]:
        path = os.path.join(tmp, f"{name}.onnx")
        torch.onnx.export(module, inputs, path, opset_version=17, dynamo=False)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
        sessions.append((session, feed))

    def ort_hop():
        for session, feed in sessions:
            session.run(None, feed)

    report(f"onnxruntime {ort.__version__}", timed(ort_hop))

    try:
        from onnxruntime import quantization as q
    except ImportError:
        print("onnxruntime.quantization is not available: no ONNX Runtime int8 figure")
        raise SystemExit(0)

    class Frames(q.CalibrationDataReader):
        """A few frames of noise at several levels, as avscene calibrates on generated audio."""

        def __init__(self):
            name = sessions[0][0].get_inputs()[0].name
            self.batches = iter(
                [{name: (torch.randn(10, 48000) * level).numpy()} for level in (0.003, 0.05, 0.5)]
            )

        def get_next(self):
            return next(self.batches, None)

    source = os.path.join(tmp, "openl3.onnx")
    prepared = os.path.join(tmp, "openl3-prepared.onnx")
    quantized = os.path.join(tmp, "openl3-int8.onnx")
    q.quant_pre_process(source, prepared)
    # Reduced-range activations on CPUs without VNNI, as ORT recommends for AVX2 (and as
    # avscene does): the u8×s8 pair sums saturate at full range.
    q.quantize_static(
        prepared,
        quantized,
        Frames(),
        quant_format=q.QuantFormat.QOperator,
        per_channel=True,
        reduce_range=True,
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
    )
    session = ort.InferenceSession(quantized, options, providers=["CPUExecutionProvider"])
    sessions[0] = (session, {session.get_inputs()[0].name: frames.numpy()})
    report(f"onnxruntime {ort.__version__} int8 OpenL3", timed(ort_hop))

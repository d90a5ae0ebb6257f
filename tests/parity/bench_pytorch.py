"""The peer figure for `avscene bench`: a PyTorch eager run of the same architecture
(reference.py, random weights), one window from scratch at a time, as avscene's naive
path computes it (OpenL3 on the 96 frames in chunks of 8, the image branch on 10 images,
then the head).

    python tests/parity/bench_pytorch.py [--threads 2] [--windows 2]
"""
import argparse
import time

import torch

from reference import FULL, SceneNet

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--windows", type=int, default=2)
parser.add_argument("--chunk", type=int, default=8)
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.set_grad_enabled(False)
net = SceneNet(FULL).eval()
frames = torch.randn(96, 48000) * 0.1
images = torch.randn(10, 3, 224, 224)


def window():
    audio = torch.cat([net.openl3(c) for c in frames.split(args.chunk)]).view(1, 96, 512)
    pictures = net.video(images).view(1, 10, -1)
    return net.head(audio, pictures)


window()  # warm-up
times = []
for _ in range(args.windows):
    start = time.perf_counter()
    window()
    times.append(time.perf_counter() - start)
per = sum(times) / len(times)
print(f"pytorch {torch.__version__} eager, full model, batch 1, {args.threads} threads, chunks of {args.chunk}: "
      f"{per:.2f} s per window = {1 / per:.4f} windows/s")

"""End-to-end check of the weight import path with real PyTorch checkpoints: build the
reference networks with random weights, save their state dicts with torch.save (as
torchvision and torchopenl3 distribute them, and as the authors' train.py saves a
Mixed_model checkpoint: {"state_dict", "optimizer", ...}, its ResNet still carrying
torchvision's ImageNet `fc`), import the .pth files with `avscene import-weights` (which
reads torch.save's zip and legacy formats itself), and compare every tensor of the resulting model files with the
PyTorch values. Run by tests/import_weights.rs when a Python with torch is
available (AVSCENE_TEST_PYTHON, or .deps/torch-venv); exits non-zero on a mismatch.

    python tests/parity/check_import.py path/to/avscene WORKDIR
"""
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
from reference import FULL, PytorchOpenl3, ResNet, SceneNet  # noqa: E402

avscene, work = sys.argv[1], sys.argv[2]
torch.manual_seed(0)

resnet = ResNet("bottleneck", (3, 4, 6, 3), 64)
resnet.fc = torch.nn.Linear(2048, 1000)  # torchvision's checkpoint has the ImageNet head
for m in resnet.modules():  # give BN buffers non-default values
    if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.uniform_(-0.1, 0.1)
        m.running_var.uniform_(0.5, 1.5)
openl3 = PytorchOpenl3(FULL)

paths = {}
for name, module, legacy in [("resnet50", resnet, True), ("openl3", openl3, False)]:
    pth = os.path.join(work, f"{name}.pth")
    # torchvision's older files use the legacy (non-zip) format: cover both.
    torch.save(module.state_dict(), pth, _use_new_zipfile_serialization=not legacy)
    paths[name] = pth

out = os.path.join(work, "imported.safetensors")
subprocess.run([avscene, "import-weights", "--resnet50", paths["resnet50"], "--openl3", paths["openl3"], "--out", out], check=True)
model = load_file(out)

checked = 0
for prefix, module in [("video.resnet.", resnet), ("openl3.", openl3)]:
    for name, value in module.state_dict().items():
        if name.endswith("num_batches_tracked") or name.startswith("fc."):
            continue
        ours = model[prefix + name]
        assert ours.shape == value.shape, (name, ours.shape, value.shape)
        assert torch.equal(ours, value.float()), f"{prefix}{name} differs"
        checked += 1

# The authors' Mixed_model: every part but OpenL3 (their model takes OpenL3 embeddings).
mixed = SceneNet(FULL)
mixed.video.resnet.fc = torch.nn.Linear(2048, 1000)  # resnet_model.resnet50 keeps it
state = {k: v for k, v in mixed.state_dict().items() if not k.startswith("openl3.")}
pth = os.path.join(work, "Epoch_21_acc_0.90.pth")
optimizer = torch.optim.Adam(mixed.parameters(), lr=1e-4)
torch.save({"epoch": 21, "state_dict": state, "optimizer": optimizer.state_dict(), "acc": 0.9}, pth)
out = os.path.join(work, "dual_stream.safetensors")
run = subprocess.run([avscene, "import-weights", "--dual-stream", pth, "--out", out],
                     check=True, capture_output=True, text=True)
assert "video.resnet.fc.bias, video.resnet.fc.weight" in run.stdout, run.stdout
model = load_file(out)
for name, value in state.items():
    if name.endswith("num_batches_tracked") or name.startswith("video.resnet.fc."):
        continue
    assert torch.equal(model[name], value.float()), f"{name} differs"
    checked += 1
print(f"import check: {checked} tensors identical")

#!/usr/bin/env python3
"""Convert a PyTorch checkpoint (.pth / .pt state dict) to safetensors, keeping its tensor
names, for `avscene import-weights`.

    python3 scripts/pth-to-safetensors.py resnet50-0676ba61.pth resnet50.safetensors

resnet50-0676ba61.pth is torchvision's IMAGENET1K_V1, the weights `resnet50(pretrained=True)`
gave the authors (https://download.pytorch.org/models/resnet50-0676ba61.pth; the same
weights were once served as resnet50-19c8e357.pth). The newer IMAGENET1K_V2
(resnet50-11ad3fa6.pth) is another training recipe, not the paper's.
An authors' Mixed_model checkpoint ({"state_dict": ..., "optimizer": ...}) converts the same
way, for `avscene import-weights --dual-stream`.

Needs a Python with torch and safetensors (scripts/setup.sh --cuda makes one in
.deps/torch-venv; any `pip install torch safetensors` works). Handles plain state dicts,
{"state_dict": ...} / {"model": ...} wrappers and DataParallel's "module." prefixes.
"""
import sys

import torch
from safetensors.torch import save_file


def state_dict_of(obj):
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                return state_dict_of(obj[key])
        return obj
    raise SystemExit(f"not a state dict: {type(obj).__name__}")


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as error:  # old pickles of whole modules need the full unpickler
        print(f"{src}: weights-only load failed ({error}); retrying with the full unpickler", file=sys.stderr)
        obj = torch.load(src, map_location="cpu", weights_only=False)
    tensors = {}
    for name, value in state_dict_of(obj).items():
        if not torch.is_tensor(value):
            continue
        name = name[len("module."):] if name.startswith("module.") else name
        if name.endswith("num_batches_tracked"):
            continue
        tensors[name] = value.detach().to(torch.float32).contiguous()
    if not tensors:
        raise SystemExit(f"{src}: no tensors found")
    save_file(tensors, dst, metadata={"converted_from": src})
    print(f"wrote {len(tensors)} tensors to {dst}")


if __name__ == "__main__":
    main()

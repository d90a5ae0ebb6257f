"""Regenerate tests/parity/golden.safetensors: outputs of the PyTorch reference
(reference.py) with deterministic weights and inputs that tests/common rebuilds in tch
bit for bit, so the parity tests need no Python.

    .deps/torch-venv/bin/python tests/parity/make_golden.py   # after scripts/setup.sh --cuda
    (any Python with torch==2.13.0, numpy, safetensors; librosa optional)
"""
import json
import os

import torch
from safetensors.torch import save_file

from reference import FULL, SMALL, SceneNet, deterministic_, input_tensor

torch.set_grad_enabled(False)
out = {}
meta = {}

full = SceneNet(FULL).eval()
meta["names_full"] = json.dumps(deterministic_(full))
emb = input_tensor((2, 96, 512), 0.1)
images = input_tensor((2, 3, 224, 224), 0.2, 1.5)
out["attention"] = full.audio_net.encoder1(emb)
out["audio_net"] = full.audio_net(emb)
out["video"] = full.video(images)
out["head"] = full.head(emb, input_tensor((2, 10, 256), 0.3))
out["forward"] = full(input_tensor((1, 96, 512), 0.1), input_tensor((1, 10, 3, 224, 224), 0.2, 1.5))
frames = input_tensor((2, 48000), 0.4, 0.3, step=0.0575)
out["openl3_spectrogram"] = full.openl3.speclayer(frames)
out["openl3"] = full.openl3(frames)
rows = torch.tensor([0, 1, 100, 1024])
out["dft_real_rows"] = full.openl3.speclayer.dft_real_kernels[rows]
out["dft_imag_rows"] = full.openl3.speclayer.dft_imag_kernels[rows]
out["mel_basis"] = full.openl3.speclayer.mel_basis
try:
    import librosa  # an independent check of the mel matrix

    mel = librosa.filters.mel(sr=48000, n_fft=2048, n_mels=256, fmin=0, fmax=24000, htk=True, norm="slaney")
    assert torch.allclose(torch.tensor(mel), out["mel_basis"], atol=1e-6), "mel basis differs from librosa's"
    meta["mel_basis_checked_with"] = "librosa " + librosa.__version__
except ImportError:
    pass

small = SceneNet(SMALL).eval()
meta["names_small"] = json.dumps(deterministic_(small))
out["small_forward"] = small(input_tensor((2, 96, 512), 0.1), input_tensor((2, 10, 3, 224, 224), 0.2, 1.5))
out["small_openl3"] = small.openl3(frames)

meta["torch"] = torch.__version__
save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(os.path.dirname(__file__), "golden.safetensors"), metadata=meta)
print({k: tuple(v.shape) for k, v in out.items()})

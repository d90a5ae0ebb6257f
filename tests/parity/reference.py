"""PyTorch reference of avscene's model, written for the parity tests.

It mirrors the authors' published code (Yuanbo2020/DCASE2021-T1B: model.py,
sub_attention.py, resnet_model.py) and torchopenl3's PytorchOpenl3, with the same module
names, so a state dict from either maps onto avscene's tensor names 1:1. Sizes come from
the same profile values as src/model/spec.rs.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FULL = dict(dim=256, openl3_channels=(64, 128, 256, 512), audio_channels=(64, 128, 256),
            audio_heads=8, audio_d_ff=512, fusion_heads=16, fusion_d_ff=512,
            block="bottleneck", layers=(3, 4, 6, 3), width=64, classes=10)
SMALL = dict(dim=64, openl3_channels=(8, 16, 32, 64), audio_channels=(16, 32, 64),
             audio_heads=8, audio_d_ff=128, fusion_heads=4, fusion_d_ff=128,
             block="basic", layers=(1, 1, 1, 1), width=16, classes=10)


# --- sub_attention.py --------------------------------------------------------------
class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, heads):
        super().__init__()
        self.heads, self.d_k = heads, d_model // heads
        self.W_Q = nn.Linear(d_model, d_model)
        self.W_K = nn.Linear(d_model, d_model)
        self.W_V = nn.Linear(d_model, d_model)
        self.output = nn.Linear(d_model, d_model)
        self.layerNorm = nn.LayerNorm(d_model)

    def forward(self, x):
        b = x.size(0)
        split = lambda t: t.view(b, -1, self.heads, self.d_k).transpose(1, 2)
        q, k, v = split(self.W_Q(x)), split(self.W_K(x)), split(self.W_V(x))
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)), dim=-1)  # no 1/sqrt(d_k)
        ctx = torch.matmul(attn, v).transpose(1, 2).contiguous().view(b, -1, self.heads * self.d_k)
        return self.layerNorm(self.output(ctx) + x)


class PoswiseFeedForwardNet(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.conv1 = nn.Conv1d(d_model, d_ff, 1)
        self.conv2 = nn.Conv1d(d_ff, d_model, 1)
        self.layerNorm = nn.LayerNorm(d_model)

    def forward(self, x):
        y = self.conv2(F.relu(self.conv1(x.transpose(1, 2)))).transpose(1, 2)
        return self.layerNorm(y + x)


class EncoderLayer(nn.Module):
    def __init__(self, d_model, d_ff, heads):
        super().__init__()
        self.enc_self_attn = MultiHeadAttention(d_model, heads)
        self.pos_ffn = PoswiseFeedForwardNet(d_model, d_ff)

    def forward(self, x):
        return self.pos_ffn(self.enc_self_attn(x))


class Encoder(nn.Module):
    def __init__(self, d_model, d_ff, heads):
        super().__init__()
        self.layers = nn.ModuleList([EncoderLayer(d_model, d_ff, heads)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


# --- model.py ----------------------------------------------------------------------
class AudioNet(nn.Module):
    def __init__(self, p):
        super().__init__()
        c1, c2, c3 = p["audio_channels"]
        self.encoder1 = Encoder(512, p["audio_d_ff"], p["audio_heads"])
        stage = lambda ci, co, k, s, pool: nn.Sequential(
            nn.Conv2d(ci, co, kernel_size=(1, k), stride=s), nn.BatchNorm2d(co), nn.ReLU(),
            *([nn.MaxPool2d(2, 1)] if pool else []))
        self.conv1 = stage(1, c1, 7, (3, 4), True)
        self.conv2 = stage(c1, c2, 5, (3, 3), True)
        self.conv3 = stage(c2, c3, 5, (1, 3), False)
        self.conv4 = stage(c3, p["dim"], 5, (1, 3), False)

    def forward(self, x):
        x = self.encoder1(x).unsqueeze(1)
        x = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        return torch.mean(x, dim=-1).transpose(1, 2)


# --- resnet_model.py (torchvision layout) -----------------------------------------
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in, planes, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in, planes, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, block, layers, width):
        super().__init__()
        block = Bottleneck if block == "bottleneck" else BasicBlock
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = width
        for stage, count in enumerate(layers):
            planes, blocks = width << stage, []
            for i in range(count):
                stride = 2 if i == 0 and stage > 0 else 1
                c_out = planes * block.expansion
                down = None
                if stride != 1 or c_in != c_out:
                    down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                blocks.append(block(c_in, planes, stride, down))
                c_in = c_out
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.features = c_in

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class VideoNet(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.resnet = ResNet(p["block"], p["layers"], p["width"])
        self.fc = nn.Sequential(nn.Linear(self.resnet.features, p["dim"]), nn.ReLU(), nn.BatchNorm1d(p["dim"]))

    def forward(self, x):  # (N, 3, 224, 224) -> (N, dim)
        x = self.resnet(x)
        x = F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


# --- torchopenl3's PytorchOpenl3 (mel256) ------------------------------------------
class SpecLayer(nn.Module):
    def __init__(self, n_dft=2048, n_mels=256, sr=48000):
        super().__init__()
        bins, t = n_dft // 2 + 1, np.arange(n_dft)
        w = np.arange(bins).reshape(-1, 1) * 2 * np.pi / n_dft * t.reshape(1, -1)
        window = (0.5 - 0.5 * np.cos(2 * np.pi * t / n_dft)).astype(np.float32)
        self.register_buffer("dft_real_kernels", torch.tensor((np.cos(w) * window).astype(np.float32)).unsqueeze(1))
        self.register_buffer("dft_imag_kernels", torch.tensor((-np.sin(w) * window).astype(np.float32)).unsqueeze(1))
        self.register_buffer("mel_basis", torch.tensor(mel_htk_slaney(sr, n_dft, n_mels)))

    def forward(self, x):  # (N, 48000) -> (N, 256, 199)
        x = F.pad(x.unsqueeze(1), (982, 982))
        re = F.conv1d(x, self.dft_real_kernels, stride=242)
        im = F.conv1d(x, self.dft_imag_kernels, stride=242)
        mel = torch.sqrt(torch.matmul(self.mel_basis, re.pow(2) + im.pow(2)))
        db = 10 * torch.log(torch.clamp(mel, min=1e-10)) / np.log(10).astype(np.float32)
        return torch.clamp(db - torch.amax(db, dim=(1, 2), keepdim=True), min=-80.0)


def mel_htk_slaney(sr, n_dft, n_mels):
    """HTK mel filters, area-normalised (kapre 0.1.4 / librosa<=0.6 norm=1)."""
    hz2mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
    mel2hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    mel_f = mel2hz(np.linspace(hz2mel(0.0), hz2mel(sr / 2), n_mels + 2))
    fft_f = np.linspace(0, sr / 2, n_dft // 2 + 1)
    fdiff, ramps = np.diff(mel_f), mel_f.reshape(-1, 1) - fft_f.reshape(1, -1)
    weights = np.zeros((n_mels, len(fft_f)))
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


class PytorchOpenl3(nn.Module):
    def __init__(self, p):
        super().__init__()
        c1, c2, c3, c4 = p["openl3_channels"]
        self.speclayer = SpecLayer()
        bn = lambda c: nn.BatchNorm2d(c, eps=0.001, momentum=0.01)
        plan = [(1, c1), (c1, c1), (c1, c2), (c2, c2), (c2, c3), (c3, c3), (c3, c4)]
        self.batch_normalization_1 = bn(1)
        for i, (ci, co) in enumerate(plan):
            setattr(self, f"conv2d_{i + 1}", nn.Conv2d(ci, co, 3, padding=1))
            setattr(self, f"batch_normalization_{i + 2}", bn(co))
        self.audio_embedding_layer = nn.Conv2d(c4, 512, 3, padding=1)

    def forward(self, x):  # (N, 48000) -> (N, 512)
        x = self.batch_normalization_1(self.speclayer(x).unsqueeze(1))
        for i in range(7):
            x = F.relu(getattr(self, f"batch_normalization_{i + 2}")(getattr(self, f"conv2d_{i + 1}")(x)))
            if i in (1, 3, 5):
                x = F.max_pool2d(x, 2)
        x = F.max_pool2d(self.audio_embedding_layer(x), (32, 24))
        return torch.flatten(x, 1)


class SceneNet(nn.Module):
    """Mixed_model with OpenL3 in front."""

    def __init__(self, p):
        super().__init__()
        self.openl3 = PytorchOpenl3(p)
        self.audio_net = AudioNet(p)
        self.video = VideoNet(p)
        self.encoder = Encoder(2 * p["dim"], p["fusion_d_ff"], p["fusion_heads"])
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(2 * p["dim"], p["classes"]))

    def head(self, audio_emb, image_emb):
        mixed = torch.cat([self.audio_net(audio_emb), image_emb], dim=-1)
        out = self.classifier(self.encoder(mixed))
        return torch.mean(out, dim=1) + torch.max(out, dim=1)[0]

    def forward(self, audio_emb, images):
        b = images.size(0)
        image_emb = self.video(images.view(b * 10, 3, 224, 224)).view(b, 10, -1)
        return self.head(audio_emb, image_emb)


# --- deterministic weights and inputs, computed the same way in tests/common --------
def wave(n, phase, step=0.37):
    return torch.sin(torch.arange(n, dtype=torch.float32) * step + phase)


def deterministic_(module):
    """Set every parameter and BN buffer from sines (skip the front end's buffers)."""
    state = module.state_dict()
    names = sorted(k for k in state if "speclayer" not in k and not k.endswith("num_batches_tracked"))
    with torch.no_grad():
        for i, name in enumerate(names):
            t = state[name]
            base = wave(t.numel(), i * 1.3).view(t.shape)
            if name.endswith("running_var"):
                value = 1.0 + 0.5 * base * base
            elif name.endswith("running_mean"):
                value = 0.1 * base
            elif name.endswith("bias"):
                value = 0.02 * base
            elif t.dim() == 1:  # norm weights
                value = 1.0 + 0.1 * base
            else:
                fan_in = t.numel() // t.shape[0]
                value = base * (1.2 / math.sqrt(fan_in))
            t.copy_(value)
    return names


def input_tensor(shape, phase, scale=1.0, step=0.013):
    n = int(np.prod(shape))
    return wave(n, phase, step).view(*shape) * scale

"""SegAN's segmentor, critic, losses and joint training step written plainly in PyTorch: a peer to time ours
against (bench_torch_peer.py). Benchmark code only; segan_lib never imports torch.

Layer for layer the Keras models of segan_lib.nets (segmentor.py, critic.py, layers.py): 4x4 stride-2
convolutions padded by 1 (TensorFlow's 'same' for even sizes), 3x3 'same' decoder convolutions, batch
norm (epsilon 1e-5, PyTorch momentum 0.1 = Keras 0.9) where ours has it, LeakyReLU(0.2), x2 bilinear
upsampling with half-pixel centres (`F.interpolate(align_corners=False)`, which equals ours; or
upsample="repeat": ours written the same way, a repeat and a [1/4, 1/2, 1/4] filter), the skip additions,
a sigmoid; the critic's features [input, layer1, layer2, layer3]. Tensors are NCHW, PyTorch's own layout.

The step is segan_lib.training.segan.SegAN's "joint" order: one segmentor forward, the critic on (image,
truth) and (image, prediction), multi-scale L1 (mean over the concatenated features), soft Dice, the
segmentor's gradient of l1 + dice and the critic's of -l1 at the same weights (two backward passes, as our
persistent tape takes two gradients), then RMSprop on each (torch's RMSprop, alpha 0.9, epsilon 1e-7,
no momentum, is TensorFlow 2.0's formula: v = rho v + (1 - rho) g^2, w -= lr g / (sqrt(v) + eps)) and the
critic's kernels clipped to +-clip.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.2
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.1  # PyTorch's meaning: Keras' 0.9
DICE_EPS = 1e-6


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)


def _smooth(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Edge replicated once on each side, then [1/4, 1/2, 1/4] along `dim` (ours, BilinearUpSampling2D)."""
    n = x.shape[dim]
    x = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, n - 1, 1)], dim=dim)
    return 0.25 * x.narrow(dim, 0, n) + 0.5 * x.narrow(dim, 1, n) + 0.25 * x.narrow(dim, 2, n)


def upsample2x(x: torch.Tensor, how: str = "interpolate") -> torch.Tensor:
    if how == "interpolate":
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    if how == "repeat":
        x = _smooth(torch.repeat_interleave(x, 2, dim=2), 2)
        return _smooth(torch.repeat_interleave(x, 2, dim=3), 3)
    raise ValueError(f"upsample must be 'interpolate' or 'repeat', got {how!r}")


class Segmentor(nn.Module):
    """Encoder 4 x [conv 4x4/2] (width * 1, 2, 4, 8; bias and no batch norm on the first), decoder 3 x
    [up, conv 3x3, batch norm, ReLU, + encoder skip], up, conv 3x3 (bias), sigmoid."""

    def __init__(self, n_channels: int, width: int, n_outputs: int = 1, upsample: str = "interpolate"):
        super().__init__()
        self.upsample = upsample
        mults = (1, 2, 4, 8)
        self.enc_conv = nn.ModuleList()
        self.enc_bn = nn.ModuleList()
        cin = n_channels
        for i, m in enumerate(mults):
            self.enc_conv.append(nn.Conv2d(cin, width * m, 4, stride=2, padding=1, bias=i == 0))
            self.enc_bn.append(nn.Identity() if i == 0 else _bn(width * m))
            cin = width * m
        self.dec_conv = nn.ModuleList()
        self.dec_bn = nn.ModuleList()
        for m in (4, 2, 1):
            self.dec_conv.append(nn.Conv2d(cin, width * m, 3, padding=1, bias=False))
            self.dec_bn.append(_bn(width * m))
            cin = width * m
        self.out_conv = nn.Conv2d(cin, n_outputs, 3, padding=1, bias=True)

    def forward(self, x):
        skips = []
        for conv, bn in zip(self.enc_conv, self.enc_bn):
            x = F.leaky_relu(bn(conv(x)), LEAKY_SLOPE)
            skips.append(x)
        for j, (conv, bn) in enumerate(zip(self.dec_conv, self.dec_bn)):
            x = F.relu(bn(conv(upsample2x(x, self.upsample)))) + skips[2 - j]
        return torch.sigmoid(self.out_conv(upsample2x(x, self.upsample)))


class Critic(nn.Module):
    """Input concat(image, segmentation) or image * segmentation, then 3 x [conv 4x4/2] (width * 1, 2, 4;
    batch norm from the second on), LeakyReLU(0.2); returns the four flattened features."""

    def __init__(self, n_image_channels: int, width: int, input_mode: str = "concat", n_seg_channels: int = 1):
        super().__init__()
        if input_mode not in ("concat", "mask") or (input_mode == "mask" and n_seg_channels != 1):
            raise ValueError(f"input_mode 'concat' or 'mask' (one segmentation channel), got {input_mode!r}")
        self.input_mode = input_mode
        cin = n_image_channels + n_seg_channels if input_mode == "concat" else n_image_channels
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        for i, m in enumerate((1, 2, 4)):
            self.convs.append(nn.Conv2d(cin, width * m, 4, stride=2, padding=1, bias=i == 0))
            self.bns.append(nn.Identity() if i == 0 else _bn(width * m))
            cin = width * m

    def forward(self, image, seg):
        x = torch.cat([image, seg], dim=1) if self.input_mode == "concat" else image * seg
        features = [x.flatten(1)]
        for conv, bn in zip(self.convs, self.bns):
            x = F.leaky_relu(bn(conv(x)), LEAKY_SLOPE)
            features.append(x.flatten(1))
        return features


def multiscale_l1(real, fake):
    """Mean of |real - fake| over the batch and the concatenated features (ours, reduction "concat_mean")."""
    total = sum((r - f).abs().sum() for r, f in zip(real, fake))
    return total / sum(r.numel() for r in real)


def dice_loss(truth, prediction, eps: float = DICE_EPS):
    """1 - the batch mean of the per-sample soft Dice 2 (sum pg + eps) / (sum p^2 + sum g^2 + 2 eps)."""
    p, g = prediction.flatten(1), truth.flatten(1)
    dice = 2.0 * ((p * g).sum(1) + eps) / ((p * p).sum(1) + (g * g).sum(1) + 2.0 * eps)
    return 1.0 - dice.mean()


@torch.no_grad()
def batch_dice(truth, prediction, threshold: float = 0.5, eps: float = 1e-6):
    """The batch mean of the thresholded per-sample Dice that our step logs (segan_lib.metrics.batch); 1 where
    both are empty."""
    p, g = (prediction > threshold).flatten(1).float(), (truth != 0).flatten(1).float()
    two_tp = 2.0 * (p * g).sum(1)
    err = (p * (1.0 - g)).sum(1) + ((1.0 - p) * g).sum(1)
    denom = two_tp + err
    return torch.where(denom > eps, two_tp / denom.clamp_min(eps), torch.ones_like(denom)).mean()


class JointStep:
    """One training step of the joint order on a fixed (images, truth) batch, NCHW tensors."""

    def __init__(self, segmentor: Segmentor, critic: Critic, learning_rate: float = 2e-5, clip: float = 0.05,
                 dice_weight: float = 1.0):
        self.segmentor, self.critic = segmentor.train(), critic.train()
        self.seg_params = [p for p in segmentor.parameters() if p.requires_grad]
        self.critic_params = [p for p in critic.parameters() if p.requires_grad]
        self.kernels = [c.weight for c in critic.convs]  # the clipped weights (ours: clip_scope "kernels")
        self.clip, self.dice_weight = clip, dice_weight
        opt = dict(lr=learning_rate, alpha=0.9, eps=1e-7, momentum=0.0, centered=False)
        self.seg_opt = torch.optim.RMSprop(self.seg_params, **opt)
        self.critic_opt = torch.optim.RMSprop(self.critic_params, **opt)

    def losses(self, images, truth):
        prediction = self.segmentor(images)
        l1 = multiscale_l1(self.critic(images, truth), self.critic(images, prediction))
        d_loss = dice_loss(truth, prediction)
        return l1 + self.dice_weight * d_loss, -l1, l1, d_loss, prediction

    def gradients(self, images, truth):
        """Both losses and both gradients at the current weights: the step without its updates."""
        seg_loss, critic_loss, l1, d_loss, prediction = self.losses(images, truth)
        seg_grads = torch.autograd.grad(seg_loss, self.seg_params, retain_graph=True)
        critic_grads = torch.autograd.grad(critic_loss, self.critic_params)
        return (seg_loss, critic_loss, l1, d_loss, prediction), seg_grads, critic_grads

    def apply(self, seg_grads, critic_grads) -> None:
        """The segmentor's update, the critic's, then the clip of the critic's kernels."""
        for p, g in zip(self.seg_params, seg_grads):
            p.grad = g
        for p, g in zip(self.critic_params, critic_grads):
            p.grad = g
        self.seg_opt.step()
        self.critic_opt.step()
        with torch.no_grad():
            for k in self.kernels:
                k.clamp_(-self.clip, self.clip)

    def __call__(self, images, truth) -> dict[str, float]:
        (seg_loss, critic_loss, l1, d_loss, prediction), seg_grads, critic_grads = self.gradients(images, truth)
        self.apply(seg_grads, critic_grads)
        return {"seg_loss": seg_loss.item(), "critic_loss": critic_loss.item(), "l1": l1.item(),
                "dice_loss": d_loss.item(), "dice": batch_dice(truth, prediction).item()}


# ---------------------------------------------------------------- weights from and to the Keras models
def segmentor_layers(seg: Segmentor) -> list:
    """(Keras layer name, torch module) of every layer with weights, as segan_lib.nets.segmentor names them."""
    pairs = []
    for i in range(4):
        pairs.append((f"enc{i + 1}_conv", seg.enc_conv[i]))
        if i:
            pairs.append((f"enc{i + 1}_bn", seg.enc_bn[i]))
    for j in range(3):
        pairs += [(f"dec{j + 1}_conv", seg.dec_conv[j]), (f"dec{j + 1}_bn", seg.dec_bn[j])]
    return pairs + [("out_conv", seg.out_conv)]


def critic_layers(critic: Critic) -> list:
    """(Keras layer name, torch module), as segan_lib.nets.critic names them."""
    pairs = []
    for i in range(3):
        pairs.append((f"conv{i + 1}", critic.convs[i]))
        if i:
            pairs.append((f"bn{i + 1}", critic.bns[i]))
    return pairs


def keras_layout(module: nn.Module) -> list[np.ndarray]:
    """A torch layer's weights as the Keras layer's get_weights() lists them: conv kernel (kh, kw, in, out)
    [and bias]; batch norm gamma, beta, moving mean, moving variance."""
    if isinstance(module, nn.Conv2d):
        out = [module.weight.detach().numpy().transpose(2, 3, 1, 0)]
        return out + ([module.bias.detach().numpy()] if module.bias is not None else [])
    return [t.detach().numpy() for t in (module.weight, module.bias, module.running_mean, module.running_var)]


@torch.no_grad()
def _load(module: nn.Module, weights: list) -> None:
    weights = [np.asarray(w, np.float32) for w in weights]
    if isinstance(module, nn.Conv2d):
        module.weight.copy_(torch.from_numpy(weights[0].transpose(3, 2, 0, 1).copy()))
        if module.bias is not None:
            module.bias.copy_(torch.from_numpy(weights[1]))
        return
    for t, w in zip((module.weight, module.bias, module.running_mean, module.running_var), weights):
        t.copy_(torch.from_numpy(w))


def segmentor_from_keras(model, upsample: str = "interpolate") -> Segmentor:
    """A Segmentor with the weights of our Keras segmentor (segan_lib.nets.segmentor.build_segmentor)."""
    seg = Segmentor(model.inputs[0].shape[-1], model.get_layer("enc1_conv").filters,
                    model.get_layer("out_conv").filters, upsample=upsample)
    for name, module in segmentor_layers(seg):
        _load(module, model.get_layer(name).get_weights())
    return seg


def critic_from_keras(model) -> Critic:
    """A Critic with the weights of our Keras critic (segan_lib.nets.critic.build_critic)."""
    critic = Critic(model.inputs[0].shape[-1], model.get_layer("conv1").filters,
                    input_mode=model.get_layer("critic_input").mode, n_seg_channels=model.inputs[1].shape[-1])
    for name, module in critic_layers(critic):
        _load(module, model.get_layer(name).get_weights())
    return critic


def to_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def parameter_count(module: nn.Module) -> int:
    """Every variable, as Keras' count_params counts: parameters plus batch norm's running statistics."""
    buffers = sum(b.numel() for name, b in module.named_buffers() if not name.endswith("num_batches_tracked"))
    return sum(p.numel() for p in module.parameters()) + buffers

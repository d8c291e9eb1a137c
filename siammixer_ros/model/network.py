"""The SiamMixer network (Cheng et al., Sensors 2022) in PyTorch: one definition, two execution paths.

The paper (Table 1, sections 3.1-3.3, Table 4) leaves strides, token layout and several widths
open. The interpretation implemented here (alternatives weighed in docs/network.md):

==========  =====================================================  ==================  ===========
stage       what it does                                           output stride       search map
==========  =====================================================  ==================  ===========
normalise   (x/255 - mean)/std, BGR order, inside the graph        1                   256x256x3
MB1 *       MobileNetV2 block 3->16, expansion 4, dw 5x5, stride 2 2                   128x128x16
MB2 *       MobileNetV2 block 16->32, expansion 6, dw 5x5, stride 2 4                  64x64x32
Mixer1 *    embed each 2x2 group of features to one token (32->32), 8                   32x32x32
            one mixer layer whose token mixing stays inside the
            16x16-pixel patch (its 2x2 tokens)
MB3         MobileNetV2 block 32->64, expansion 6, dw 5x5, stride 1 8                  32x32x64
Mixer2      merge 2x2 tokens (4*64 -> 128), then ``depth`` mixer    16                  16x16x128
            layers with sliding-window token mixing
MB4         MobileNetV2 block 128->256, expansion 2, dw 5x5        16                  16x16x256
head        SiamFC cross-correlation (template 8x8x256 as kernel)  16                  9x9x1
            times a learnable scale, plus a learnable bias
==========  =====================================================  ==================  ===========

``*`` = patch-based: MB1, MB2 and Mixer1 see only one 16x16-pixel patch of the search image plus
the halo their 5x5 convolutions need (6 pixels before, 3 after, see :func:`patch_halo`). The same
modules run the whole image (zero padding) and a patch (valid convolutions on a patch with halo;
the expanded maps are multiplied by a validity mask before each depthwise convolution so that
positions outside the image are zero exactly as whole-image zero padding makes them). Both paths
give the same features (tested).

Mixer layers follow MLP-Mixer with the paper's changes: BatchNorm instead of LayerNorm (pre-norm),
ReLU instead of GELU, channel mixing as Conv1d, residuals around both MLPs. Token mixing is an MLP
shared by all channels over the tokens of a window: Mixer1's window is the patch's 2x2 tokens
(non-overlapping, so patch-local); Mixer2's is a 7x7 sliding window, because one token MLP must
serve the 8x8 template and the 16x16 search map with shared (Siamese) weights and keep the features
translation-equivariant for the correlation.

Variants: XS, S, M, L = Mixer2 depth 1, 2, 4, 8.

Optional box branch (``box_head``, not in the paper; off by default, so the paper's variants, their
checkpoints and files are unchanged): anchor-free regression as in LightTrack/NanoTrack heads. Both MB4
maps go through a 1x1 adjust conv + BN to ``box_channels``, a depthwise cross-correlation gives a
(C,9,9) map, a tower of depthwise-separable 3x3 blocks and a 3x3 conv give (l, t, r, b) per response
cell: distances in search-crop pixels from the point the cell looks at to the box's left, top, right
and bottom edges (``stride * exp(x)``, so they are positive).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

# The widths of each variant live in the torch-free core (one definition, also used for memory accounting).
from siammixer_ros.core.memory import (  # noqa: F401  (re-exported)
    MEAN_BGR,
    NORMALISATION,
    PATCH_SIZE,
    SEARCH_SIZE,
    STD_BGR,
    STRIDE,
    TEMPLATE_SIZE,
    VARIANT_DEPTHS,
    SiamMixerConfig,
)
from siammixer_ros.core.memory import patch_halo as memory_patch_halo


class BranchBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm of the shared backbone with running statistics per Siamese branch.

    Why: the two branches see different crops (128 px around the target, 256 px of mostly background), and
    training normalises each with its own batch statistics (separate forward calls). One running average blends
    the two, so eval mode and the exported file normalised neither branch as it was trained: the 0.2 candidates'
    exported maps peaked at corner cells whatever the input (docs/training.md, "BatchNorm"). ``branch`` (set by
    :meth:`SiamMixer.template_features`) selects the statistics. The search branch's are the standard
    ``running_mean``/``running_var`` buffers, so a checkpoint from before keeps its meaning there and the template
    buffers start as a copy (:func:`load_model_state`).
    """

    TEMPLATE, SEARCH = "template", "search"

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.register_buffer("template_running_mean", torch.zeros(num_features))
        self.register_buffer("template_running_var", torch.ones(num_features))
        self.register_buffer("template_num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.branch = self.SEARCH

    def reset_running_stats(self) -> None:
        super().reset_running_stats()
        if hasattr(self, "template_running_mean"):  # nn.BatchNorm2d.__init__ calls this before they exist
            self.template_running_mean.zero_()
            self.template_running_var.fill_(1.0)
            self.template_num_batches_tracked.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch == self.SEARCH:
            return super().forward(x)
        momentum = 0.0
        if self.training:
            self.template_num_batches_tracked.add_(1)
            # momentum None: a cumulative average, as nn.BatchNorm2d (used to re-estimate the statistics)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.template_num_batches_tracked)
        return F.batch_norm(x, self.template_running_mean, self.template_running_var, self.weight, self.bias,
                            self.training, momentum, self.eps)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1 + BN + ReLU, depthwise kxk + BN + ReLU, project 1x1 + BN (linear).

    ``forward(x, mask, valid)``: with ``mask`` None and ``valid`` False the depthwise convolution
    zero-pads (whole image); with a mask (N,1,h,w) at the input resolution, the expanded map is
    multiplied by it and the depthwise convolution is valid, which reproduces the zero padding of the
    whole image inside a patch; ``valid`` without a mask is the same for patches wholly inside the image.
    """

    def __init__(self, cin: int, cout: int, expansion: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.kernel, self.stride, self.hidden = kernel, stride, hidden
        self.expand = nn.Conv2d(cin, hidden, 1, bias=False)
        self.expand_bn = BranchBatchNorm2d(hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, kernel, stride, padding=kernel // 2, groups=hidden, bias=False)
        self.depthwise_bn = BranchBatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, cout, 1, bias=False)
        self.project_bn = BranchBatchNorm2d(cout)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, valid: bool = False) -> torch.Tensor:
        h = self.project_bn(self.project(self.hidden_features(x, mask, valid)))
        return x + h if self.use_residual else h

    def hidden_features(self, x: torch.Tensor, mask: torch.Tensor | None = None, valid: bool = False
                        ) -> torch.Tensor:
        """The block up to its linear projection: expand + depthwise, after the second ReLU."""
        h = F.relu(self.expand_bn(self.expand(x)))
        if mask is None and not valid:
            h = self.depthwise(h)
        else:
            # A patch with halo: valid convolution; the mask (when given) zeroes positions outside the
            # image. Interior patches (halo entirely inside the image) need no mask.
            if mask is not None:
                h = h * mask
            h = F.conv2d(h, self.depthwise.weight, None, self.stride, 0, 1, self.hidden)
        return F.relu(self.depthwise_bn(h))

    def folded_projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The projection with its BatchNorm folded (eval mode): ``(weight (cout, hidden), bias (cout))``."""
        bn = self.project_bn
        gain = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = self.project.weight[:, :, 0, 0] * gain[:, None]
        return weight, bn.bias - bn.running_mean * gain

    def output_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The validity mask at this block's output for a valid (unpadded) depthwise convolution."""
        pad, s = self.kernel // 2, self.stride
        n = (mask.shape[-1] - self.kernel) // s + 1
        end = pad + s * (n - 1) + 1
        return mask[:, :, pad:end:s, pad:end:s]


class TokenMixing(nn.Module):
    """Pre-norm (BatchNorm) token-mixing MLP shared by all channels, with a residual.

    ``sliding`` False: non-overlapping windows of window x window tokens (an MLP over the window's
    tokens: Conv window/stride window 1->hidden, ReLU, ConvTranspose back onto the tokens).
    ``sliding`` True: a sliding window (Conv kxk 1->hidden, ReLU, Conv 1x1 hidden->1): each token is
    updated from its kxk neighbourhood with the same weights everywhere.

    The weights (``fc1``: 1->hidden, ``fc2``: hidden->1) are shared by all channels, as in MLP-Mixer.
    They are applied as convolutions with the weights repeated per channel (constant-folded at export):
    the same arithmetic as folding channels into the batch, but one call per image instead of one tiny
    call per channel, which is what onnxruntime runs fast.
    """

    def __init__(self, channels: int, hidden: int, window: int, sliding: bool) -> None:
        super().__init__()
        self.channels, self.hidden, self.window, self.sliding = channels, hidden, window, sliding
        self.norm = BranchBatchNorm2d(channels)
        if sliding:
            self.fc1 = nn.Conv2d(1, hidden, window, padding=window // 2)
            self.fc2: nn.Module = nn.Conv2d(hidden, 1, 1)
        else:
            self.fc1 = nn.Conv2d(1, hidden, window, stride=window)
            self.fc2 = nn.ConvTranspose2d(hidden, 1, window, stride=window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, t = self.channels, self.hidden
        y = self.norm(x)
        h, w = y.shape[-2], y.shape[-1]
        # Each channel repeated ``hidden`` times (channel c*hidden + j = channel c), then one depthwise
        # convolution whose kernel c*hidden + j is fc1's kernel j: fc1 applied to every channel. onnxruntime
        # runs depthwise convolutions in its fast blocked layout (2x faster than the grouped form here).
        y = y.unsqueeze(2).expand(-1, c, t, h, w).reshape(-1, c * t, h, w)
        y = F.conv2d(y, self.fc1.weight.repeat(c, 1, 1, 1), self.fc1.bias.repeat(c), self.fc1.stride,
                     self.fc1.padding, groups=c * t)
        y = F.relu(y)
        if self.sliding:
            y = F.conv2d(y, self.fc2.weight.repeat(c, 1, 1, 1), self.fc2.bias.repeat(c), groups=c)
        else:
            # ConvTranspose weight is (in, out/groups, k, k): (hidden, 1, k, k) repeated per channel group.
            y = F.conv_transpose2d(y, self.fc2.weight.repeat(c, 1, 1, 1), self.fc2.bias.repeat(c),
                                   self.fc2.stride, groups=c)
        return x + y

    def macs(self, x: torch.Tensor) -> int:
        """MACs of one call on ``x`` (the grouped convolutions above)."""
        n, c, h, w = x.shape
        k = self.window * self.window
        if self.sliding:
            return n * c * h * w * self.hidden * (k + 1)
        return n * c * (h // self.window) * (w // self.window) * self.hidden * k * 2


class ChannelMixing(nn.Module):
    """Pre-norm (BatchNorm) channel-mixing MLP as Conv1d over the flattened tokens, with a residual."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.norm = BranchBatchNorm2d(channels)
        self.fc1 = nn.Conv1d(channels, hidden, 1)
        self.fc2 = nn.Conv1d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The Conv1d weights (out, in, 1) applied as 1x1 Conv2d on the (B,C,H,W) token map: the same
        # arithmetic as Conv1d over the flattened tokens, without the reshapes, and in onnxruntime's
        # blocked-layout convolution like its neighbours (no layout reorders around it).
        y = self.norm(x)
        y = F.relu(F.conv2d(y, self.fc1.weight.unsqueeze(-1), self.fc1.bias))
        y = F.conv2d(y, self.fc2.weight.unsqueeze(-1), self.fc2.bias)
        return x + y

    def macs(self, x: torch.Tensor) -> int:
        n, c, h, w = x.shape
        return n * h * w * c * self.fc1.out_channels * 2


class MixerLayer(nn.Module):
    def __init__(self, channels: int, token_hidden: int, window: int, sliding: bool, channel_hidden: int) -> None:
        super().__init__()
        self.token_mixing = TokenMixing(channels, token_hidden, window, sliding)
        self.channel_mixing = ChannelMixing(channels, channel_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mixing(self.token_mixing(x))


class MixerStage(nn.Module):
    """Token embedding/merging (a 2x2 stride-2 conv = a linear map of each 2x2 group) + BN, then mixer layers."""

    def __init__(self, cin: int, cout: int, depth: int, token_hidden: int, window: int, sliding: bool,
                 channel_hidden: int) -> None:
        super().__init__()
        self.merge = nn.Conv2d(cin, cout, 2, stride=2, bias=False)
        self.merge_bn = BranchBatchNorm2d(cout)
        self.layers = nn.Sequential(
            *[MixerLayer(cout, token_hidden, window, sliding, channel_hidden) for _ in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.merge_bn(self.merge(x)))


class Correlation(nn.Module):
    """SiamFC cross-correlation: template features slide over search features (valid)."""

    def forward(self, zf: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        if zf.shape[0] == 1:
            return self.single_template(zf, xf)
        if zf.shape[0] != xf.shape[0]:
            raise ValueError(f"template batch {zf.shape[0]} must be 1 or equal the search batch {xf.shape[0]}")
        b, c, h, w = xf.shape
        out = F.conv2d(xf.reshape(1, b * c, h, w), zf, groups=b)
        return out.reshape(b, 1, out.shape[-2], out.shape[-1])


    @staticmethod
    def single_template(zf: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        """One template against a batch of search maps (tracking, several scales): = conv2d(xf, zf).

        Computed as a 1x1 convolution of the search features with the k*k template columns (one GEMM,
        output (B,k*k,H,W)), then a constant one-hot k x k convolution that adds, for every response
        position, column (u,v) taken at offset (u,v). Same sum, 3x faster in onnxruntime than a
        convolution whose 8x8 kernel is a graph input (measured: 0.76 vs 2.2 ms for 3 scales).
        """
        c, k = zf.shape[1], zf.shape[2]
        columns = zf.reshape(c, k * k).t().reshape(k * k, c, 1, 1)
        select = torch.eye(k * k, dtype=xf.dtype, device=xf.device).reshape(1, k * k, k, k)
        return F.conv2d(F.conv2d(xf, columns), select)


class CorrelationHead(nn.Module):
    """Cross-correlation times a learnable scale plus a learnable bias (SiamFC's ``adjust``)."""

    def __init__(self, scale_init: float = 1e-3) -> None:
        super().__init__()
        self.correlation = Correlation()
        self.scale = nn.Parameter(torch.tensor(float(scale_init)))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, zf: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        return self.correlation(zf, xf) * self.scale + self.bias


class DepthwiseCorrelation(nn.Module):
    """Depthwise cross-correlation (SiamRPN++): channel c of the template slides over channel c of the search map."""

    def forward(self, zf: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        b, c, h, w = xf.shape
        k = zf.shape[-1]
        if zf.shape[0] == 1:
            return F.conv2d(xf, zf.reshape(c, 1, k, k), groups=c)
        if zf.shape[0] != b:
            raise ValueError(f"template batch {zf.shape[0]} must be 1 or equal the search batch {b}")
        out = F.conv2d(xf.reshape(1, b * c, h, w), zf.reshape(b * c, 1, k, k), groups=b * c)
        return out.reshape(b, c, out.shape[-2], out.shape[-1])


class SeparableBlock(nn.Module):
    """Depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU (the box branch's tower)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(channels)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.pointwise_bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.depthwise_bn(self.depthwise(x)))
        return F.relu(self.pointwise_bn(self.pointwise(x)))


class BoxHead(nn.Module):
    """Anchor-free box regression: (1 or B,Cin,8,8) x (B,Cin,16,16) -> (B,4,9,9) (l, t, r, b) search-crop pixels."""

    # exp() of the prediction is clamped here: stride * e^6 = 6455 px, far beyond any crop.
    MAX_LOG = 6.0

    def __init__(self, in_channels: int, channels: int, tower: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.template_adjust = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.template_bn = nn.BatchNorm2d(channels)
        self.search_adjust = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.search_bn = nn.BatchNorm2d(channels)
        self.correlation = DepthwiseCorrelation()
        self.tower = nn.Sequential(*[SeparableBlock(channels) for _ in range(tower)])
        self.predict = nn.Conv2d(channels, 4, 3, padding=1)
        # Start at half a template's target (the SiamFC crop puts a target of ~64 px in the search crop): every
        # distance 2 strides = 32 px, and small weights so that the start does not depend on the features.
        nn.init.normal_(self.predict.weight, std=1e-3)
        nn.init.constant_(self.predict.bias, math.log(2.0))

    def from_adjusted(self, zk: torch.Tensor, xk: torch.Tensor) -> torch.Tensor:
        """The branch after the adjust layers: adjusted template (1 or B,C,8,8) and search (B,C,16,16) maps."""
        x = self.tower(self.correlation(zk, xk))
        return self.stride * torch.exp(self.predict(x).clamp(max=self.MAX_LOG))

    def forward(self, zf: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        zk = self.template_bn(self.template_adjust(zf))
        xk = self.search_bn(self.search_adjust(xf))
        return self.from_adjusted(zk, xk)


class SiamMixer(nn.Module):
    """SiamMixer. ``SiamMixer(variant="xs")``; ``forward(z, x) -> response (B,1,9,9)``.

    Inputs are float32 NCHW BGR 0..255 (normalised inside), template (B or 1,3,128,128), search
    (B,3,256,256). A template batch of 1 is correlated with every search image (tracking, several
    scales); a template batch equal to the search batch pairs them one to one (training).
    """

    def __init__(self, variant: str = "xs", config: SiamMixerConfig | None = None, box_head: bool | None = None
                 ) -> None:
        super().__init__()
        self.variant = variant.lower()
        cfg = config or SiamMixerConfig.for_variant(self.variant)
        if box_head is not None and box_head != cfg.box_head:
            cfg = dataclasses.replace(cfg, box_head=box_head)
        self.config = cfg
        self.template_size, self.search_size, self.patch_size = TEMPLATE_SIZE, SEARCH_SIZE, PATCH_SIZE
        self.register_buffer("norm_scale", torch.tensor([1.0 / (255.0 * s) for s in STD_BGR]).view(1, 3, 1, 1))
        shift = [-m / s for m, s in zip(MEAN_BGR, STD_BGR, strict=True)]
        self.register_buffer("norm_shift", torch.tensor(shift).view(1, 3, 1, 1))
        self.mb1 = InvertedResidual(*cfg.mb1[:3], cfg.kernel, cfg.mb1[3])
        self.mb2 = InvertedResidual(*cfg.mb2[:3], cfg.kernel, cfg.mb2[3])
        self.mixer1 = MixerStage(cfg.mb2[1], cfg.mixer1_channels, 1, cfg.mixer1_token_hidden, 2, False,
                                 cfg.mixer1_channel_hidden)
        self.mb3 = InvertedResidual(*cfg.mb3[:3], cfg.kernel, cfg.mb3[3])
        self.mixer2 = MixerStage(cfg.mb3[1], cfg.mixer2_channels, cfg.depth, cfg.mixer2_token_hidden,
                                 cfg.mixer2_token_window, True, cfg.mixer2_channel_hidden)
        self.mb4 = InvertedResidual(*cfg.mb4[:3], cfg.kernel, cfg.mb4[3])
        self.head_module = CorrelationHead(cfg.head_scale_init)
        self.box_head: BoxHead | None = None
        if cfg.box_head:
            self.box_head = BoxHead(cfg.mb4[1], cfg.box_channels, cfg.box_tower, STRIDE)
        # True in the copy made by fold_input_normalisation (export): MB1's expand conv does it.
        self.normalisation_folded = False
        # The backbone's BatchNorms whose statistics template_features switches (a plain tuple: not a second
        # registration of the modules; deepcopy maps it onto the copy's own).
        self._branch_norms = tuple(m for m in self.modules() if isinstance(m, BranchBatchNorm2d))

    # --- backbone pieces -------------------------------------------------------------------
    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalisation_folded:
            return x
        return x * self.norm_scale + self.norm_shift

    def shallow(self, x: torch.Tensor, mask: torch.Tensor | None = None, patches: bool | None = None
                ) -> torch.Tensor:
        """Normalise + MB1 + MB2 + Mixer1 (the patch-based stage): stride 8, 32 channels.

        ``mask`` None and ``patches`` falsy: a whole image (H, W multiples of 16). Otherwise ``x`` is a
        batch of patches with halo (N,3,Q,Q) -> (N,32,2,2); ``mask`` (N,1,Q,Q) is 1 inside the image
        (None: patches whose halo lies wholly inside the image).
        """
        valid = mask is not None if patches is None else patches
        x = self.normalise(x)
        x = self.mb1(x, mask, valid)
        x = self.mb2(x, None if mask is None else self.mb1.output_mask(mask), valid)
        return self.mixer1(x)

    def deep(self, x: torch.Tensor) -> torch.Tensor:
        """MB3 + Mixer2 + MB4 (global): stride 8 map -> stride 16 features with 256 channels."""
        return self.mb4(self.mixer2(self.mb3(x)))

    def deep_hidden(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`deep` without MB4's final linear projection (see :meth:`head_from_hidden`)."""
        return self.mb4.hidden_features(self.mixer2(self.mb3(x)))

    # --- public API ------------------------------------------------------------------------
    def template_features(self, z: torch.Tensor) -> torch.Tensor:
        """(B,3,128,128) -> (B,256,8,8), with the template branch's BatchNorm statistics."""
        for m in self._branch_norms:
            m.branch = BranchBatchNorm2d.TEMPLATE
        try:
            return self.deep(self.shallow(z))
        finally:
            for m in self._branch_norms:
                m.branch = BranchBatchNorm2d.SEARCH

    def search_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,256,256) -> (B,256,16,16), whole-image inference."""
        return self.deep(self.shallow(x))

    def search_patch_features(self, patches: torch.Tensor, patch_masks: torch.Tensor) -> torch.Tensor:
        """Patch stage: (N,3,Q,Q) patches with halo + (N,1,Q,Q) masks -> (N,32,2,2)."""
        return self.shallow(patches, patch_masks)

    def search_patch_interior_features(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch stage for patches whose halo lies wholly inside the image (no mask needed; faster)."""
        return self.shallow(patches, None, patches=True)

    def search_global_features(self, patch_grid: torch.Tensor) -> torch.Tensor:
        """Global stage: the assembled patch outputs (B,32,2G,2G) -> (B,256,G,G)."""
        return self.deep(patch_grid)

    def head(self, zf: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        """(1 or B,256,8,8) x (B,256,16,16) -> (B,1,9,9) raw scores (logits)."""
        return self.head_module(zf, xf)

    def search_hidden(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,256,256) -> (B,hidden,16,16): the search features before MB4's linear projection."""
        return self.deep_hidden(self.shallow(x))

    def head_from_hidden(self, zf: torch.Tensor, xh: torch.Tensor) -> torch.Tensor:
        """:meth:`head` on the search features *before* MB4's projection (what the exported search parts return).

        The projection is linear (``xf = W xh + b`` per position, BatchNorm folded) and the correlation is
        linear in ``xf``, so ``corr(zf, xf) = corr(W^T zf, xh) + sum(zf * b)``: the projection moves to the
        template side, where it runs once per call on the 8x8 template map instead of on every 16x16 search
        map (3 scales: 50 M multiply-accumulates less per frame; same response to float rounding).
        """
        if self.mb4.use_residual:
            raise ValueError("head_from_hidden needs MB4 without a residual (cin != cout)")
        weight, bias = self.mb4.folded_projection()
        kernel = F.conv2d(zf, weight.t()[:, :, None, None])
        offset = (zf * bias.view(1, -1, 1, 1)).sum(dim=(1, 2, 3)).view(-1, 1, 1, 1)
        head = self.head_module
        return (head.correlation(kernel, xh) + offset) * head.scale + head.bias

    @property
    def has_box_head(self) -> bool:
        return self.box_head is not None

    def box(self, zf: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        """Box branch: (1 or B,256,8,8) x (B,256,16,16) -> (B,4,9,9) (l, t, r, b) in search-crop pixels."""
        if self.box_head is None:
            raise ValueError("this SiamMixer has no box branch (build it with box_head=True)")
        return self.box_head(zf, xf)

    def box_from_hidden(self, zf: torch.Tensor, xh: torch.Tensor) -> torch.Tensor:
        """:meth:`box` on the search features before MB4's projection (what the exported search parts return).

        The search adjust conv is linear after the projection (``W_a (W xh + b)``), so the two fold into one 1x1
        conv from the hidden features: the same map to float rounding, and no projection on the search side.
        """
        if self.box_head is None:
            raise ValueError("this SiamMixer has no box branch (build it with box_head=True)")
        box = self.box_head
        weight, bias = self.mb4.folded_projection()
        adjust = box.search_adjust.weight[:, :, 0, 0]
        xk = F.conv2d(xh, (adjust @ weight)[:, :, None, None], adjust @ bias)
        zk = box.template_bn(box.template_adjust(zf))
        return box.from_adjusted(zk, box.search_bn(xk))

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.template_features(z), self.search_features(x))

    # --- facts ------------------------------------------------------------------------------
    @property
    def stride(self) -> int:
        return STRIDE

    @property
    def response_size(self) -> int:
        return (self.search_size - self.template_size) // STRIDE + 1

    def halo(self) -> tuple[int, int]:
        return patch_halo(self)

    @property
    def patch_feature_size(self) -> int:
        return self.patch_size // 8

    @property
    def patch_feature_channels(self) -> int:
        return self.config.mixer1_channels


def fold_input_normalisation(model: SiamMixer) -> SiamMixer:
    """An eval-mode copy of ``model`` whose input normalisation is folded into MB1's expand conv + BN.

    expand(x*s + t) = expand_{W*s}(x) + W t, and the constant W t moves into the BatchNorm's running
    mean: exact up to float rounding, and it saves a pass over the input image. (Valid for the patch
    path too: MB1's expand is 1x1, so pixels outside the image only reach masked positions.)
    """
    folded = copy.deepcopy(model).eval()
    if folded.normalisation_folded:
        return folded
    with torch.no_grad():
        w = folded.mb1.expand.weight  # (hidden, 3, 1, 1)
        shift = (w[:, :, 0, 0] * folded.norm_shift.view(1, 3)).sum(dim=1)
        w.mul_(folded.norm_scale.view(1, 3, 1, 1))
        folded.mb1.expand_bn.running_mean.sub_(shift)
        folded.mb1.expand_bn.template_running_mean.sub_(shift)
    folded.normalisation_folded = True
    return folded


def patch_halo(model: SiamMixer) -> tuple[int, int]:
    """Pixels before / after a patch that MB1 and MB2 need: (6, 3) for 5x5, s2, s2 (see core.memory.patch_halo)."""
    return memory_patch_halo(model.config, model.patch_size)


def load_model_state(model: SiamMixer, state: dict[str, torch.Tensor], grow_depth: bool = False) -> list[str]:
    """Load a state_dict; a checkpoint made without the box branch loads into a model with it (only the branch's
    keys are new: they keep their fresh initialisation). Returns those new keys; any other mismatch raises.

    ``grow_depth``: the checkpoint may come from a shallower variant (e.g. XS weights into an S model, which has one
    Mixer2 layer more): the layers it lacks start as the identity (:func:`identity_mixer_layer`), so the grown
    model computes exactly what the checkpoint's did and training adds capacity from there (a new run's
    ``init_checkpoint``, never a resume).

    A checkpoint from before the per-branch BatchNorm statistics (:class:`BranchBatchNorm2d`) has one blended
    set: both branches start from it (the old behaviour; :func:`has_branch_statistics` tells, and
    ``siammixer_ros.train.bn_stats`` re-estimates them)."""
    state = dict(state)
    for name, module in model.named_modules():
        if isinstance(module, BranchBatchNorm2d):
            prefix = f"{name}." if name else ""
            for stat in ("running_mean", "running_var", "num_batches_tracked"):
                if f"{prefix}template_{stat}" not in state and f"{prefix}{stat}" in state:
                    state[f"{prefix}template_{stat}"] = state[f"{prefix}{stat}"].clone()
    missing, unexpected = model.load_state_dict(state, strict=False)
    depth = 1 + max((int(k.split(".")[2]) for k in state if k.startswith("mixer2.layers.")), default=-1)
    if grow_depth and depth:  # the layers after the checkpoint's last one (none of them: not a SiamMixer state)
        for layer in model.mixer2.layers[depth:]:
            identity_mixer_layer(layer)
        grown = tuple(f"mixer2.layers.{i}." for i in range(depth, len(model.mixer2.layers)))
        missing = [k for k in missing if not k.startswith(grown)]
    new = [k for k in missing if k.startswith("box_head.")]
    # Missing keys are fine only when the checkpoint has no box branch at all (not a partial one).
    wrong = [k for k in missing if not k.startswith("box_head.")]
    if new and any(k.startswith("box_head.") for k in state):
        wrong += new
    if wrong or unexpected:
        problems = [f"missing keys: {', '.join(wrong[:8])}"] if wrong else []
        if unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected[:8])}"
                            + ("" if model.has_box_head else " (a checkpoint with the box branch needs box_head=True)"))
        raise RuntimeError(f"state_dict does not fit SiamMixer-{model.variant.upper()}: {'; '.join(problems)}")
    return new


def identity_mixer_layer(layer: MixerLayer) -> None:
    """Make a mixer layer the identity: both MLPs' last layers zero, so each residual adds nothing. Their inputs
    still reach them, so the zero weights get gradients and the layer learns from the first step (fc1 follows as
    soon as fc2 is no longer zero)."""
    with torch.no_grad():
        for mlp in (layer.token_mixing, layer.channel_mixing):
            mlp.fc2.weight.zero_()
            mlp.fc2.bias.zero_()


def has_branch_statistics(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state_dict holds per-branch BatchNorm statistics (made since they exist)."""
    return any(k.endswith("template_running_mean") for k in state)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers and are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: SiamMixer, template_size: int = TEMPLATE_SIZE, search_size: int = SEARCH_SIZE,
               search_batch: int = 1) -> dict[str, int]:
    """Multiply-accumulates of one template + ``search_batch`` search images, counted by forward hooks.

    Counted: Conv1d/Conv2d/ConvTranspose2d (kernel MACs, grouped), Linear, token and channel mixing
    (their functional convolutions, :meth:`TokenMixing.macs`, :meth:`ChannelMixing.macs`) and the correlation.
    Not counted (as usual for "FLOPs" tables): BatchNorm, ReLU, additions, normalisation.
    Returns {"template": .., "search": .., "head": .., "total": ..}.
    """
    counts = {"current": 0}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        counts["current"] += module_macs(module, inputs, output)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear, Correlation, TokenMixing,
                                  ChannelMixing, DepthwiseCorrelation))]
    result: dict[str, int] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            z = torch.zeros(1, 3, template_size, template_size)
            x = torch.zeros(search_batch, 3, search_size, search_size)
            zf = model.template_features(z)
            result["template"], counts["current"] = counts["current"], 0
            xf = model.search_features(x)
            result["search"], counts["current"] = counts["current"], 0
            model.head(zf, xf)
            if model.box_head is not None:
                before = counts["current"]
                model.box(zf, xf)
                result["box"] = counts["current"] - before
            result["head"] = counts["current"]
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    result["total"] = result["template"] + result["search"] + result["head"]
    return result


def module_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """MACs of one call of a conv/linear/correlation module (see :func:`count_macs`)."""
    if isinstance(module, (TokenMixing, ChannelMixing)):
        return module.macs(inputs[0])
    if isinstance(module, nn.ConvTranspose2d):
        x = inputs[0]
        k = module.kernel_size[0] * module.kernel_size[1]
        return x.numel() * (module.out_channels // module.groups) * k
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        k = 1
        for s in module.kernel_size:
            k *= s
        return output.numel() * (module.in_channels // module.groups) * k
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    if isinstance(module, Correlation):
        zf = inputs[0]
        return output.numel() * zf.shape[1] * zf.shape[2] * zf.shape[3]
    if isinstance(module, DepthwiseCorrelation):
        zf = inputs[0]
        return output.numel() * zf.shape[2] * zf.shape[3]
    return 0

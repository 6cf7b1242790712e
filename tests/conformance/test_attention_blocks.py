#!/usr/bin/python3
"""SE, CBAM and BAM as people write them, each spelling against its PyTorch module.

    /usr/bin/python3 test_attention_blocks.py --fusec build/fusec --examples examples [--filter NAME]

examples/se.fuse, cbam.fuse and bam.fuse mirror one implementation each (test_examples.py checks
them). The same blocks circulate in other spellings: the channel MLP as nn.Linear on [N, C] or
as 1x1 nn.Conv2d on [N, C, 1, 1]; the global pools as AdaptiveAvgPool2d, mean with or without
keepdim, avg_pool2d over the whole map, followed by view, flatten or indexing; the spatial
pools max-first or mean-first, unsqueezed or keepdim, with a BatchNorm after the 7x7 conv (the
authors' CBAM code). Each case is the PyTorch module and the .fuse a user would write for it,
with the state_dict's keys as scopes; eval() mode, random weights and BatchNorm statistics,
batch 2 and odd sizes (C = 24, H = 13, W = 17). test_fusion's attention_spellings checks that
every spelling compiles to the same fused kernels.
"""

import collections
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conformance import Suite, randomize_bn  # noqa: E402

S = Suite(__doc__)
N, C, H, W, R = 2, 24, 13, 17, 4
HEADER = "fuse 1\ndim N = %d, C = %d, H = %d, W = %d\n" % (N, C, H, W)


def spec(body):
    lines = "\n".join("    " + ln.strip() for ln in body.strip().splitlines())
    return HEADER + "graph g(x: f32[N, C, H, W]) -> f32[N, C, H, W] {\n%s\n}\n" % lines


def block_case(name, module, body, seed):
    torch.manual_seed(seed)
    for p in module.parameters():  # biases too: a zero default init would hide a dropped one
        with torch.no_grad():
            p.uniform_(-0.5, 0.5)
    model = randomize_bn(module).eval()
    x = torch.randn(N, C, H, W)
    with torch.no_grad():
        y = model(x)
    S.check(name, spec(body), collections.OrderedDict([(None, x)]), {None: y},
            weights=model.state_dict())


# ---- SE ----

class SEMeanLinear(nn.Module):
    """mean without keepdim, Linear with bias, the gate indexed back to 4-d."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(C, C // R)
        self.fc2 = nn.Linear(C // R, C)

    def forward(self, x):
        y = x.mean((2, 3))
        y = torch.sigmoid(self.fc2(F.relu(self.fc1(y))))
        return x * y[:, :, None, None]


block_case("se_mean_linear", SEMeanLinear(), """
    y = mean(x, axes=[2, 3])
    y = sigmoid(linear(relu(linear(y, out=C // 4) @fc1), out=C) @fc2)
    return x * view(y, shape=[N, C, 1, 1])
""", 21)


class SEConv(nn.Module):
    """The timm / EfficientNet form: mean with keepdim, 1x1 convs with bias, x * gate.sigmoid()."""

    def __init__(self):
        super().__init__()
        self.conv_reduce = nn.Conv2d(C, C // R, 1)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(C // R, C, 1)

    def forward(self, x):
        x_se = x.mean((2, 3), keepdim=True)
        x_se = self.conv_expand(self.act1(self.conv_reduce(x_se)))
        return x * x_se.sigmoid()


block_case("se_conv_keepdim", SEConv(), """
    s = mean(x, axes=[2, 3], keepdim=true)
    s = conv2d(relu(conv2d(s, out=C // 4, kernel=1) @conv_reduce), out=C, kernel=1) @conv_expand
    return x * sigmoid(s)
""", 22)


class SEPoolFlatten(nn.Module):
    """AdaptiveAvgPool2d then flatten, a Sequential MLP without bias, the gate on the left."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(C, C // R, bias=False), nn.ReLU(),
                                nn.Linear(C // R, C, bias=False), nn.Sigmoid())

    def forward(self, x):
        b, c = x.shape[:2]
        y = self.fc(torch.flatten(self.pool(x), 1))
        return y.view(b, c, 1, 1) * x


block_case("se_pool_flatten", SEPoolFlatten(), """
    y = flatten(mean(x, axes=[-2, -1], keepdim=true), start=1)
    y = sigmoid(linear(relu(linear(y, out=C // 4, bias=false) @fc.0), out=C, bias=false) @fc.2)
    return view(y, shape=[N, -1, 1, 1]) * x
""", 23)


class SEConvView(nn.Module):
    """Pooled without keepdim, viewed to [N, C, 1, 1] for 1x1 convs."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Sequential(nn.Conv2d(C, C // R, 1, bias=False), nn.ReLU(),
                                nn.Conv2d(C // R, C, 1, bias=False))

    def forward(self, x):
        y = x.mean(dim=[2, 3]).view(x.size(0), x.size(1), 1, 1)
        return x * torch.sigmoid(self.fc(y))


block_case("se_conv_view", SEConvView(), """
    y = view(mean(x, axes=[2, 3]), shape=[N, C, 1, 1])
    y = conv2d(relu(conv2d(y, out=C // 4, kernel=1, bias=false) @fc.0), out=C, kernel=1,
               bias=false) @fc.2
    return x * sigmoid(y)
""", 24)


# ---- CBAM ----

class ChannelGateLinear(nn.Module):
    """CBAM's channel gate as in the authors' code: avg_pool2d / max_pool2d over the whole map,
    flattened, one Linear MLP (with bias) for both, summed, sigmoid, unsqueezed."""

    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(C, C // R), nn.ReLU(),
                                 nn.Linear(C // R, C))

    def forward(self, x):
        avg = self.mlp(F.avg_pool2d(x, (x.size(2), x.size(3))))
        mx = self.mlp(F.max_pool2d(x, (x.size(2), x.size(3))))
        scale = torch.sigmoid(avg + mx).unsqueeze(2).unsqueeze(3)
        return x * scale.expand_as(x)


block_case("cbam_channel_linear", ChannelGateLinear(), """
    a = linear(relu(linear(view(mean(x, axes=[2, 3], keepdim=true), shape=[N, C]), out=C // 4)
        @mlp.1), out=C) @mlp.3
    m = linear(relu(linear(flatten(amax(x, axes=[2, 3], keepdim=true), start=1), out=C // 4)
        @mlp.1), out=C) @mlp.3
    return x * view(sigmoid(a + m), shape=[N, C, 1, 1])
""", 25)


class ChannelGateConv(nn.Module):
    """The common CBAM channel attention with its pools without keepdim, viewed back."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Conv2d(C, C // R, 1, bias=False)
        self.fc2 = nn.Conv2d(C // R, C, 1, bias=False)

    def forward(self, x):
        n, c = x.shape[:2]
        avg = x.mean((2, 3)).view(n, c, 1, 1)
        mx = x.amax((2, 3)).view(n, c, 1, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(avg))) + self.fc2(F.relu(self.fc1(mx))))


block_case("cbam_channel_conv_view", ChannelGateConv(), """
    a = view(mean(x, axes=[2, 3]), shape=[N, C, 1, 1])
    m = view(amax(x, axes=[2, 3]), shape=[N, C, 1, 1])
    a = conv2d(relu(conv2d(a, out=C // 4, kernel=1, bias=false) @fc1), out=C, kernel=1,
               bias=false) @fc2
    m = conv2d(relu(conv2d(m, out=C // 4, kernel=1, bias=false) @fc1), out=C, kernel=1,
               bias=false) @fc2
    return x * sigmoid(a + m)
""", 26)


class SpatialGateBN(nn.Module):
    """CBAM's spatial gate as in the authors' code: max first, then mean, each unsqueezed; the
    7x7 conv followed by a BatchNorm."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x):
        pooled = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), 1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


block_case("cbam_spatial_max_first_bn", SpatialGateBN(), """
    m = view(amax(x, axes=[1]), shape=[N, 1, H, W])
    a = view(mean(x, axes=[1]), shape=[N, 1, H, W])
    s = conv2d(concat(m, a, axis=1), out=1, kernel=7, padding=3, bias=false) @conv
    s = batchnorm2d(s) @bn
    return x * sigmoid(s)
""", 27)


class CBAMLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.channel = ChannelGateLinear()
        self.spatial = SpatialGateBN()

    def forward(self, x):
        return self.spatial(self.channel(x))


block_case("cbam_linear_bn", CBAMLinear(), """
    a = view(mean(x, axes=[2, 3], keepdim=true), shape=[N, C])
    m = amax(x, axes=[2, 3])
    a = linear(relu(linear(a, out=C // 4) @channel.mlp.1), out=C) @channel.mlp.3
    m = linear(relu(linear(m, out=C // 4) @channel.mlp.1), out=C) @channel.mlp.3
    y = x * view(sigmoid(a + m), shape=[N, C, 1, 1])
    s = concat(amax(y, axes=[1], keepdim=true), mean(y, axes=[1], keepdim=true), axis=1)
    s = batchnorm2d(conv2d(s, out=1, kernel=7, padding=3, bias=false) @spatial.conv) @spatial.bn
    return y * sigmoid(s)
""", 28)


# ---- BAM ----

class BAMConv(nn.Module):
    """BAM with the channel gate as 1x1 convs on the pooled map and one dilated conv."""

    def __init__(self):
        super().__init__()
        self.c_reduce = nn.Conv2d(C, C // R, 1)
        self.c_bn = nn.BatchNorm2d(C // R)
        self.c_expand = nn.Conv2d(C // R, C, 1)
        self.s_reduce = nn.Conv2d(C, C // R, 1)
        self.s_bn = nn.BatchNorm2d(C // R)
        self.s_di = nn.Conv2d(C // R, C // R, 3, padding=2, dilation=2)
        self.s_di_bn = nn.BatchNorm2d(C // R)
        self.s_final = nn.Conv2d(C // R, 1, 1)

    def forward(self, x):
        c = F.adaptive_avg_pool2d(x, 1)
        c = self.c_expand(F.relu(self.c_bn(self.c_reduce(c))))
        s = F.relu(self.s_bn(self.s_reduce(x)))
        s = self.s_final(F.relu(self.s_di_bn(self.s_di(s))))
        return x * (1 + torch.sigmoid(c.expand_as(x) + s.expand_as(x)))


block_case("bam_conv", BAMConv(), """
    c = mean(x, axes=[2, 3], keepdim=true)
    c = conv2d(relu(batchnorm2d(conv2d(c, out=C // 4, kernel=1) @c_reduce) @c_bn), out=C,
               kernel=1) @c_expand
    s = relu(batchnorm2d(conv2d(x, out=C // 4, kernel=1) @s_reduce) @s_bn)
    s = relu(batchnorm2d(conv2d(s, out=C // 4, kernel=3, padding=2, dilation=2) @s_di) @s_di_bn)
    s = conv2d(s, out=1, kernel=1) @s_final
    return x * (1 + sigmoid(c + s))
""", 29)

S.finish()

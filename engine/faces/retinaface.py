"""RetinaFace with a ResNet-50 body: the face detector A1111's face restoration uses (through facexlib's
`retinaface_resnet50`), written here so that its file, `detection_Resnet50_Final.pth`, loads as it is.

The modules carry the names of that file's state dict (`body.layer2…`, `fpn.output1.0.weight`,
`ssh1.conv5X5_1.0.weight`, `ClassHead.0.conv1x1.weight`, …; a `module.` prefix is dropped), the body being
torchvision's resnet50 up to `layer4`. The constants are the published ones (facexlib 0.3.0,
facexlib/detection/retinaface.py `cfg_re50`, retinaface_utils.py): prior boxes of min sizes 16/32, 64/128,
256/512 on strides 8, 16, 32; variances 0.1 and 0.2; the input in BGR with the mean 104, 117, 123 taken off;
faces kept above a confidence of 0.97 (facexlib's FaceRestoreHelper) and merged by NMS at 0.4 IoU. As in
A1111, the picture is first resized so that its shorter side is 640 (Lanczos) and the found boxes and
landmarks scaled back. tests/engine/test_face_detector.py pins the outputs against facexlib's own class.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass
from math import ceil

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50
from torchvision.ops import nms

MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCE = (0.1, 0.2)
BGR_MEAN = (104.0, 117.0, 123.0)
CONFIDENCE = 0.97  # FaceRestoreHelper.get_face_landmarks_5 (RetinaFace's own default is 0.8)
NMS_IOU = 0.4
DETECT_SHORT_SIDE = 640  # A1111: get_face_landmarks_5(resize=640)
ANCHORS = 2
FEATURES = 256  # cfg_re50: in_channel 256 (the body's layer2 has 2×, 4×, 8× that), out_channel 256
BODY_LAYERS = ("layer2", "layer3", "layer4")


def _conv_bn(cin: int, cout: int, kernel: int, relu: bool) -> nn.Sequential:
    """Conv (no bias), batch norm and (out_channel > 64: slope 0) a ReLU, as one Sequential (keys .0, .1)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _Body(nn.Module):
    """torchvision's resnet50 through layer4 (no pooling, no fc), returning layer2, layer3 and layer4."""

    def __init__(self) -> None:
        super().__init__()
        net = resnet50(weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", *BODY_LAYERS):
            self.add_module(name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        out = []
        for name in BODY_LAYERS:
            x = getattr(self, name)(x)
            out.append(x)
        return out


class _FPN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for index, cin in enumerate((FEATURES * 2, FEATURES * 4, FEATURES * 8), start=1):
            self.add_module(f"output{index}", _conv_bn(cin, FEATURES, 1, relu=True))
        self.merge1 = _conv_bn(FEATURES, FEATURES, 3, relu=True)
        self.merge2 = _conv_bn(FEATURES, FEATURES, 3, relu=True)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out1, out2, out3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        out2 = self.merge2(out2 + F.interpolate(out3, size=out2.shape[2:], mode="nearest"))
        out1 = self.merge1(out1 + F.interpolate(out2, size=out1.shape[2:], mode="nearest"))
        return [out1, out2, out3]


class _SSH(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        half, quarter = FEATURES // 2, FEATURES // 4
        self.conv3X3 = _conv_bn(FEATURES, half, 3, relu=False)
        self.conv5X5_1 = _conv_bn(FEATURES, quarter, 3, relu=True)
        self.conv5X5_2 = _conv_bn(quarter, quarter, 3, relu=False)
        self.conv7X7_2 = _conv_bn(quarter, quarter, 3, relu=True)
        self.conv7x7_3 = _conv_bn(quarter, quarter, 3, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        five = self.conv5X5_1(x)
        seven = self.conv7x7_3(self.conv7X7_2(five))
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(five), seven], dim=1))


class _Head(nn.Module):
    """One level's 1×1 conv giving `values` numbers per anchor, as (batch, anchors, values)."""

    def __init__(self, values: int) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(FEATURES, ANCHORS * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return out.view(out.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """The network: body, FPN, three SSH modules and the class, box and landmark heads of each level."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _Body()
        self.fpn = _FPN()
        self.ssh1, self.ssh2, self.ssh3 = _SSH(), _SSH(), _SSH()
        self.ClassHead = nn.ModuleList(_Head(2) for _ in range(3))
        self.BboxHead = nn.ModuleList(_Head(4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(_Head(10) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Box offsets, class probabilities (softmax; column 1 is "face") and landmark offsets per prior."""
        fpn = self.fpn(self.body(x))
        feats = [self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2])]
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, feats, strict=True)], dim=1)
        classes = torch.cat([head(f) for head, f in zip(self.ClassHead, feats, strict=True)], dim=1)
        marks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, feats, strict=True)], dim=1)
        return boxes, F.softmax(classes, dim=-1), marks


def empty_retinaface() -> RetinaFace:
    """The network with its tensors on the meta device (no memory, no random init), for loading with
    `load_state_dict(..., assign=True)` or reading its keys and shapes."""
    with torch.device("meta"):
        return RetinaFace()


def detector_state(state: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """The file's tensors under the network's names (DataParallel's `module.` prefix dropped)."""
    return OrderedDict((k.removeprefix("module."), v) for k, v in state.items())


def prior_boxes(height: int, width: int) -> torch.Tensor:
    """(N, 4) priors as (cx, cy, w, h), relative to the picture, in the heads' order (level, row, column,
    size)."""
    priors = []
    for sizes, step in zip(MIN_SIZES, STEPS, strict=True):
        for i, j in itertools.product(range(ceil(height / step)), range(ceil(width / step))):
            for size in sizes:
                priors.append(
                    ((j + 0.5) * step / width, (i + 0.5) * step / height, size / width, size / height)
                )
    return torch.tensor(priors, dtype=torch.float32)


@dataclass(frozen=True)
class Face:
    """One face found: its box (x0, y0, x1, y1), score and 5 landmarks (eyes, nose, mouth corners), in pixels."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray  # (5, 2) float32


def detect_raw(
    net: RetinaFace,
    bgr: np.ndarray,
    confidence: float = CONFIDENCE,
    nms_iou: float = NMS_IOU,
) -> list[Face]:
    """Faces in a BGR float picture at its own size (facexlib's detect_faces with use_origin_size)."""
    height, width = bgr.shape[:2]
    device = next(net.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1), dtype=np.float32)).unsqueeze(0)
    x = x - torch.tensor(BGR_MEAN).view(1, 3, 1, 1)
    with torch.inference_mode():
        loc, conf, marks = (t[0].float().cpu() for t in net(x.to(device)))
    priors = prior_boxes(height, width)
    centres, sizes = priors[:, :2], priors[:, 2:]
    boxes = torch.cat(
        (centres + loc[:, :2] * VARIANCE[0] * sizes, sizes * torch.exp(loc[:, 2:] * VARIANCE[1])), dim=1
    )
    boxes[:, :2] -= boxes[:, 2:] / 2
    boxes[:, 2:] += boxes[:, :2]
    boxes *= torch.tensor([width, height, width, height], dtype=torch.float32)
    points = centres.repeat(1, 5) + marks * VARIANCE[0] * sizes.repeat(1, 5)
    points *= torch.tensor([width, height] * 5, dtype=torch.float32)
    scores = conf[:, 1]
    keep = torch.nonzero(scores > confidence).flatten()
    keep = keep[torch.argsort(scores[keep], descending=True, stable=True)]
    keep = keep[nms(boxes[keep], scores[keep], nms_iou)]
    return [
        Face(
            tuple(float(v) for v in boxes[k]),  # type: ignore[arg-type]
            float(scores[k]),
            points[k].view(5, 2).numpy().astype(np.float32),
        )
        for k in keep.tolist()
    ]


def detect_faces(
    net: RetinaFace,
    rgb: np.ndarray,
    confidence: float = CONFIDENCE,
    nms_iou: float = NMS_IOU,
    short_side: int | None = DETECT_SHORT_SIDE,
) -> list[Face]:
    """Faces in an RGB uint8 picture, as A1111 finds them: resized to a shorter side of 640 (Lanczos), found,
    and scaled back to the picture's pixels."""
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    scale = 1.0
    if short_side is not None:
        height, width = bgr.shape[:2]
        scale = min(height, width) / short_side
        size = (int(width / scale), int(height / scale))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_LANCZOS4)
    faces = detect_raw(net, bgr.astype(np.float32), confidence, nms_iou)
    return [
        Face(tuple(v * scale for v in f.box), f.score, f.landmarks * scale)  # type: ignore[arg-type]
        for f in faces
    ]

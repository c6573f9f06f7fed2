"""SSD's box decoding with its anchors precomputed: the network part of the Core ML pipeline.

SSD's default boxes depend only on the input size and the feature map sizes, both fixed at
image_size², so they are computed once here and stored as constants. The module then ends
where torchvision's post-processing starts thresholding: per-anchor class confidences and
decoded boxes, in the form Core ML's NonMaximumSuppression model takes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD
from torchvision.ops import boxes as box_ops

from worker.export.detection.context import Detections


class SSDDecoder(nn.Module):
    """1×3×S×S RGB in [0, 1] → confidence (A×N) and coordinates (A×4), A anchors, N labels.

    confidence: softmax over torchvision's classes with the background column dropped, so
    column i is labels[i] (each row sums to at most 1, as Vision expects). coordinates:
    centre x, centre y, width, height of the decoded, clipped box, divided by S.
    """

    mean: Tensor
    std: Tensor
    anchors: Tensor
    widths: Tensor
    heights: Tensor
    ctr_x: Tensor
    ctr_y: Tensor

    def __init__(self, ssd: SSD, image_size: int) -> None:
        super().__init__()
        self.backbone = ssd.backbone
        self.head = ssd.head
        self.size = float(image_size)
        coder = ssd.box_coder
        self.weights = tuple(float(w) for w in coder.weights)
        self.clip = float(coder.bbox_xform_clip)
        self.register_buffer("mean", torch.tensor(ssd.transform.image_mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(ssd.transform.image_std).view(1, 3, 1, 1))
        anchors = default_boxes(ssd, image_size)
        # The same float32 arithmetic torchvision's BoxCoder.decode_single does on each call.
        widths = anchors[:, 2] - anchors[:, 0]
        heights = anchors[:, 3] - anchors[:, 1]
        self.register_buffer("anchors", anchors)
        self.register_buffer("widths", widths)
        self.register_buffer("heights", heights)
        self.register_buffer("ctr_x", anchors[:, 0] + 0.5 * widths)
        self.register_buffer("ctr_y", anchors[:, 1] + 0.5 * heights)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        x = (image - self.mean) / self.std
        outputs = self.head(list(self.backbone(x).values()))
        confidence = F.softmax(outputs["cls_logits"][0], dim=-1)[:, 1:]
        codes = outputs["bbox_regression"][0]
        wx, wy, ww, wh = self.weights
        dw = torch.clamp(codes[:, 2] / ww, max=self.clip)
        dh = torch.clamp(codes[:, 3] / wh, max=self.clip)
        centre_x = codes[:, 0] / wx * self.widths + self.ctr_x
        centre_y = codes[:, 1] / wy * self.heights + self.ctr_y
        half_w = 0.5 * (torch.exp(dw) * self.widths)
        half_h = 0.5 * (torch.exp(dh) * self.heights)
        # Clipped to the image as torchvision does, before converting to centre and size.
        x1 = torch.clamp(centre_x - half_w, min=0.0, max=self.size)
        y1 = torch.clamp(centre_y - half_h, min=0.0, max=self.size)
        x2 = torch.clamp(centre_x + half_w, min=0.0, max=self.size)
        y2 = torch.clamp(centre_y + half_h, min=0.0, max=self.size)
        coordinates = torch.stack(((x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1), dim=1)
        return confidence, coordinates / self.size


def default_boxes(ssd: SSD, image_size: int) -> Tensor:
    """SSD's anchors (A×4, x1 y1 x2 y2 px) for an image_size² input: constant for the model."""
    with torch.no_grad():
        image = torch.zeros(1, 3, image_size, image_size)
        features = list(ssd.backbone(image).values())
        anchors = ssd.anchor_generator(ImageList(image, [(image_size, image_size)]), features)
    return anchors[0]


def corners(coordinates: Tensor, image_size: int) -> Tensor:
    """Normalised centre x, centre y, width, height → x1 y1 x2 y2 in pixels."""
    centre, size = coordinates[:, :2], coordinates[:, 2:]
    return torch.cat((centre - size / 2, centre + size / 2), dim=1) * image_size


def torchvision_decoded(ssd: SSD, image: Tensor) -> tuple[Tensor, Tensor]:
    """torchvision's own SSD steps up to its score threshold: confidence A×N and boxes A×4 px."""
    with torch.no_grad():
        images, _ = ssd.transform([image])
        features = list(ssd.backbone(images.tensors).values())
        outputs = ssd.head(features)
        anchors = ssd.anchor_generator(images, features)
        boxes = ssd.box_coder.decode_single(outputs["bbox_regression"][0], anchors[0])
        boxes = box_ops.clip_boxes_to_image(boxes, images.image_sizes[0])
        confidence = F.softmax(outputs["cls_logits"][0], dim=-1)[:, 1:]
    return confidence, boxes


def torchvision_select(ssd: SSD, confidence: Tensor, boxes: Tensor) -> Detections:
    """torchvision's SSD post-processing on decoded outputs: threshold, top-k, per-class NMS."""
    kept_boxes, kept_scores, kept_labels = [], [], []
    for label in range(confidence.shape[1]):
        score = confidence[:, label]
        keep = score > ssd.score_thresh
        score, box = score[keep], boxes[keep]
        score, order = score.topk(min(int(ssd.topk_candidates), score.numel()))
        kept_boxes.append(box[order])
        kept_scores.append(score)
        kept_labels.append(torch.full_like(score, label, dtype=torch.int64))
    all_boxes = torch.cat(kept_boxes)
    all_scores = torch.cat(kept_scores)
    all_labels = torch.cat(kept_labels)
    keep = box_ops.batched_nms(all_boxes, all_scores, all_labels, ssd.nms_thresh)
    keep = keep[: ssd.detections_per_img]
    return Detections.of(all_boxes[keep], all_scores[keep], all_labels[keep])

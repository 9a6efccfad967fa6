"""The ``segmentation:`` config section (contributed to the config by the segmentation task)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from visionpipe.core.config import require as _require

ARCHITECTURES = ("unet", "fcn", "deeplabv3plus", "segnet")
LOSSES = ("cross_entropy", "dice", "focal", "cross_entropy+dice")
# segmentation.test_time_flips -> the flips averaged (tf.reverse axes of [B, h, w, C]; () is as is)
TEST_TIME_FLIPS = {"none": ((),), "horizontal": ((), (2,)), "vertical": ((), (1,)),
                   "both": ((), (2,), (1,), (1, 2))}
ENCODERS = ("paper", "backbone")


@dataclass
class SegmentationConfig:
    # unet: encoder-decoder with skip connections; fcn: FCN-8s head on the backbone's stride
    # 8/16/32 features; deeplabv3plus: ASPP on stride 32 + a stride-4 decoder; segnet:
    # encoder-decoder that unpools with the encoder's max-pooling switches
    architecture: str = "unet"
    # unet only: "paper" (its own conv-conv-pool encoder, segmentation.depth/width) or
    # "backbone" (model.backbone's multi-scale features as the encoder)
    encoder: str = "paper"
    depth: int = 4  # unet (paper encoder) and segnet: the number of 2x downsamplings
    width: int = 16  # unet (paper encoder) and segnet: filters of the first stage (doubled per stage)
    head_channels: int = 64  # fcn / deeplabv3plus head width; unet-on-backbone decoder width
    aspp_dilation_rates: List[int] = field(default_factory=lambda: [6, 12, 18])
    # a mask pixel of this value is not scored and adds nothing to the loss (0..255: masks
    # are 8-bit PNGs); must not be a class id
    ignore_index: int = 255
    loss: str = "cross_entropy"  # cross_entropy | dice | focal | cross_entropy+dice
    # one weight per class (class id order) for cross-entropy / focal; empty: all 1
    class_weights: List[float] = field(default_factory=list)
    focal_gamma: float = 2.0
    dice_weight: float = 1.0  # the Dice term's weight in cross_entropy+dice
    # cross-entropy / focal: a pixel within boundary_radius px of a different id in its mask
    # weighs (1 + boundary_weight) times its class weight (0: off)
    boundary_weight: float = 0.0
    boundary_radius: int = 1
    # serve the per-pixel probabilities [B, h, w, C] (at model size) beside the class map. Off
    # by default: the class map (and its PNG) is the answer, and a 512x512x2 float map made a
    # REST JSON answer of 12 MB and 7x the direct call's latency
    serve_probabilities: bool = False
    # elastic deformation in training (with augment.enabled), image and mask together (the
    # mask resampled nearest-neighbour, the image bilinear, borders reflected): a smooth random
    # displacement field, Gaussian displacements of elastic_displacement px (std) on an
    # elastic_grid x elastic_grid grid of control points, upsampled bicubic (the U-Net
    # paper's: 10 px on 3 x 3). 0: off
    elastic_displacement: float = 0.0
    elastic_grid: int = 3
    # evaluation and serving (every SavedModel signature, hence the gate): average the
    # probabilities over flipped copies of the input (none | horizontal | vertical | both:
    # 1, 2, 2, 4 passes); TFLite files hold the plain network (one pass)
    test_time_flips: str = "none"
    # > 0: train on random train_crop x train_crop windows of the model-size image (and its
    # mask), cut after augmentation; evaluation, serving and TFLite still see the whole
    # model.image_size input (unet with the paper encoder and segnet only: fully convolutional)
    train_crop: int = 0

    def validate(self) -> None:
        _require(self.architecture in ARCHITECTURES, "segmentation.architecture",
                 f"must be one of {list(ARCHITECTURES)}, got {self.architecture!r}")
        _require(self.encoder in ENCODERS, "segmentation.encoder",
                 f"must be one of {list(ENCODERS)}, got {self.encoder!r}")
        _require(1 <= self.depth <= 6, "segmentation.depth", f"must be in [1, 6], got {self.depth}")
        _require(self.width >= 4, "segmentation.width", f"must be >= 4, got {self.width}")
        _require(self.head_channels >= 4, "segmentation.head_channels",
                 f"must be >= 4, got {self.head_channels}")
        _require(bool(self.aspp_dilation_rates) and all(int(r) >= 1 for r in self.aspp_dilation_rates),
                 "segmentation.aspp_dilation_rates",
                 f"must be a non-empty list of positive integers, got {self.aspp_dilation_rates}")
        _require(0 <= self.ignore_index <= 255, "segmentation.ignore_index",
                 f"must be in [0, 255] (masks are 8-bit PNGs of class ids), got {self.ignore_index}")
        _require(self.loss in LOSSES, "segmentation.loss",
                 f"must be one of {list(LOSSES)}, got {self.loss!r}")
        _require(all(w >= 0 for w in self.class_weights) and
                 (not self.class_weights or sum(self.class_weights) > 0),
                 "segmentation.class_weights",
                 f"must be non-negative and not all 0, got {self.class_weights}")
        _require(self.focal_gamma >= 0, "segmentation.focal_gamma", "must be >= 0")
        _require(self.dice_weight >= 0, "segmentation.dice_weight", "must be >= 0")
        _require(self.boundary_weight >= 0, "segmentation.boundary_weight",
                 f"must be >= 0 (0: off), got {self.boundary_weight}")
        _require(1 <= self.boundary_radius <= 16, "segmentation.boundary_radius",
                 f"must be in [1, 16] pixels, got {self.boundary_radius}")
        _require(not self.boundary_weight or self.loss != "dice", "segmentation.boundary_weight",
                 "weighs cross-entropy / focal pixels: segmentation.loss=dice has none")
        _require(self.elastic_displacement >= 0, "segmentation.elastic_displacement",
                 f"must be >= 0 pixels (0: off), got {self.elastic_displacement}")
        _require(2 <= self.elastic_grid <= 64, "segmentation.elastic_grid",
                 f"must be in [2, 64] control points per side, got {self.elastic_grid}")
        _require(self.test_time_flips in TEST_TIME_FLIPS, "segmentation.test_time_flips",
                 f"must be one of {list(TEST_TIME_FLIPS)}, got {self.test_time_flips!r}")
        _require(self.train_crop >= 0, "segmentation.train_crop",
                 f"must be >= 0 (0: no crop), got {self.train_crop}")
        _require(not self.train_crop or self.fully_convolutional, "segmentation.train_crop",
                 f"needs architecture unet with encoder paper, or segnet (a network that "
                 f"runs at any size), got architecture={self.architecture} encoder={self.encoder}")
        _require(self.train_crop % self.downsampling == 0, "segmentation.train_crop",
                 f"must be a multiple of {self.downsampling} (2**depth), got {self.train_crop}")

    @property
    def fully_convolutional(self) -> bool:
        """Whether the network is built without the backbone (runs at any multiple of
        ``downsampling``)."""
        return self.architecture == "segnet" or (self.architecture == "unet" and self.encoder == "paper")

    @property
    def downsampling(self) -> int:
        """The factor each side of ``model.image_size`` must divide by."""
        if self.architecture in ("unet", "segnet") and (self.encoder == "paper" or self.architecture == "segnet"):
            return 2 ** self.depth
        return 32

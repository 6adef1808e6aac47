"""Request bodies of the OpenAI endpoints the server answers (extra fields are accepted and ignored,
except ``compression`` and ``context``, tokenzip's own)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tokenzip.serve.errors import bad_request


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1, description="one choice per request (decoding is greedy)")
    temperature: float | None = Field(None, ge=0, le=2)  # accepted; decoding is greedy
    top_p: float | None = Field(None, ge=0, le=1)  # accepted; decoding is greedy
    compression: str | None = Field(None, description="a pipeline spec overriding the server's default")

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise bad_request("stop holds at most 4 non-empty strings", param="stop")
        return stops

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_Common):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)
    context: str | None = Field(None, description="the reusable context; the model reads context + prompt")
    echo: Literal[False] = False
    logprobs: None = None
    suffix: None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str:
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError("give one prompt per request (a string, or a list of one string)")
            return v[0]
        return v


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: Literal[False] | None = None

    @field_validator("messages")
    @classmethod
    def _has_user(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" for m in v):
            raise ValueError("messages need at least one user message")
        return v

    def plain_messages(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]

    def token_limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default


class CompressRequest(BaseModel):
    """Body of POST /v1/tokenzip/compress (the page): run the prompt and kv stages on a text, report spans."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)
    question: str | None = None
    compression: str = "prompt:extractive@0.5"
    model: str | None = None


def error_param(loc: tuple[Any, ...]) -> str | None:
    """The request field a pydantic error location points at (``messages.0.role``)."""
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or None

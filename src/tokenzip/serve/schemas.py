"""Request bodies of the OpenAI endpoints a model backend answers, checked field by field.

Every field of OpenAI's chat and legacy completion requests is either implemented (sampling: ``temperature``,
``top_p``, ``seed``, ``frequency_penalty``, ``presence_penalty``, ``logit_bias``, ``n``, ``stop``,
``logprobs``/``top_logprobs``; lengths; streaming), accepted because it only identifies the caller and
changes no answer (``user``, ``metadata``, ``safety_identifier``, ``prompt_cache_key``, ``service_tier``,
``store: false``), or refused with a 400 naming it (tools, ``response_format`` other than text, image and
audio parts, ``echo``, ``suffix``, ...). A field OpenAI does not define is refused as OpenAI refuses it
("Unrecognized request argument supplied"), except tokenzip's own ``compression`` and ``context``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tokenzip.ops.sampling import SamplingParams
from tokenzip.serve.errors import bad_request

MAX_STOPS = 4
MAX_CHOICES = 16

# Fields that identify the caller or route its request on OpenAI's side; they change no answer here.
IDENTIFYING = ("user", "metadata", "safety_identifier", "prompt_cache_key", "service_tier")
# Fields OpenAI defines that this server does not implement: refused with a 400 naming them.
UNSUPPORTED = {
    "tools": "tool calls are not supported by this server",
    "tool_choice": "tool calls are not supported by this server",
    "parallel_tool_calls": "tool calls are not supported by this server",
    "functions": "function calls are not supported by this server",
    "function_call": "function calls are not supported by this server",
    "audio": "audio output is not supported: this server serves a text model",
    "prediction": "predicted outputs are not supported by this server",
    "reasoning_effort": "reasoning_effort is not supported: this server serves a model without a reasoning mode",
    "web_search_options": "web search is not supported by this server",
    "verbosity": "verbosity is not supported by this server",
    "suffix": "suffix (insertion) is not supported by this server",
    "echo": "echo is not supported by this server: the answer holds the completion only",
}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False
    include_obfuscation: bool = False  # OpenAI's padding of stream chunks; nothing is obfuscated here


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown fields are refused in check(), with OpenAI's message
    model: str
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    n: int | None = Field(1, ge=1, le=MAX_CHOICES)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    store: bool | None = None
    compression: str | None = Field(None, description="a pipeline spec overriding the server's default")

    def check(self) -> None:
        """400 for a field the server does not implement or does not know (naming it)."""
        for name in self.model_extra or {}:
            if name in IDENTIFYING:
                continue
            if name in UNSUPPORTED:
                raise bad_request(f"{name}: {UNSUPPORTED[name]}", param=name, code="unsupported_parameter")
            raise bad_request(f"Unrecognized request argument supplied: {name}", param=name,
                              code="unrecognized_argument")
        if self.store:
            raise bad_request("store: this server keeps no completions (send store=false or leave it out)",
                              param="store", code="unsupported_parameter")
        if self.stream_options is not None and not self.stream:
            raise bad_request("stream_options is only allowed when stream is true", param="stream_options")
        for key, value in (self.logit_bias or {}).items():
            if not key.lstrip("-").isdigit():
                raise bad_request(f"logit_bias keys are token ids (integers as strings); got {key!r}",
                                  param="logit_bias")
            if not -100 <= value <= 100:
                raise bad_request(f"logit_bias values lie in [-100, 100]; got {value} for token {key}",
                                  param="logit_bias")

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOPS or any(not s for s in stops):
            raise bad_request(f"stop holds at most {MAX_STOPS} non-empty strings", param="stop")
        return stops

    def sampling(self, vocab_size: int) -> SamplingParams:
        """The sampling settings (OpenAI's defaults: temperature 1, top_p 1, no penalty); 400 for a logit bias on a
        token the model does not have."""
        bias = {int(k): float(v) for k, v in (self.logit_bias or {}).items()}
        bad = [k for k in bias if not 0 <= k < vocab_size]
        if bad:
            raise bad_request(f"logit_bias: token id {bad[0]} is outside the vocabulary (0..{vocab_size - 1})",
                              param="logit_bias")
        return SamplingParams(
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            frequency_penalty=self.frequency_penalty or 0.0, presence_penalty=self.presence_penalty or 0.0,
            logit_bias=bias)

    @property
    def choices(self) -> int:
        return self.n or 1

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=1)
    context: str | None = Field(None, description="the reusable context; the model reads context + prompt")
    logprobs: int | None = Field(None, ge=0, le=5)
    best_of: int | None = Field(None, ge=1, le=MAX_CHOICES)

    def check(self) -> None:
        super().check()
        if isinstance(self.prompt, list):
            if any(not isinstance(p, str) for p in self.prompt):
                raise bad_request("prompt: token-id prompts are not supported; send the text", param="prompt")
            if len(self.prompt) != 1:
                raise bad_request("prompt: give one prompt per request (a string, or a list of one string)",
                                  param="prompt")
        if self.best_of not in (None, self.choices):
            raise bad_request("best_of: only best_of equal to n is supported (every choice generated is returned)",
                              param="best_of", code="unsupported_parameter")

    @property
    def text(self) -> str:
        return self.prompt[0] if isinstance(self.prompt, list) else self.prompt  # type: ignore[return-value]

    @property
    def top_logprobs_count(self) -> int | None:
        """Alternatives reported per token (None: no logprobs)."""
        return self.logprobs


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text or "" for p in self.content)


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    modalities: list[str] | None = None

    def check(self) -> None:
        super().check()
        if self.response_format is not None and self.response_format.type != "text":
            raise bad_request(f"response_format: {self.response_format.type!r} is not supported (structured output "
                              "is not implemented); leave it out or send {\"type\": \"text\"}",
                              param="response_format", code="unsupported_parameter")
        if self.modalities is not None and self.modalities != ["text"]:
            raise bad_request("modalities: only [\"text\"] is supported", param="modalities",
                              code="unsupported_parameter")
        if self.top_logprobs is not None and not self.logprobs:
            raise bad_request("top_logprobs needs logprobs: true", param="top_logprobs")
        if not any(m.role == "user" for m in self.messages):
            raise bad_request("messages need at least one user message", param="messages")
        for i, m in enumerate(self.messages):
            _check_message(i, m)

    def plain_messages(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]

    @property
    def completion_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def top_logprobs_count(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


def _check_message(i: int, m: ChatMessage) -> None:
    extra = [k for k in m.model_extra or {}]
    if m.role == "tool" or "tool_calls" in extra or "function_call" in extra:
        raise bad_request(f"messages.{i}: tool calls and tool results are not supported by this server",
                          param=f"messages.{i}", code="unsupported_parameter")
    if extra:
        raise bad_request(f"messages.{i}.{extra[0]} is not supported (a message holds role and content)",
                          param=f"messages.{i}.{extra[0]}", code="unsupported_parameter")
    if m.content is None:
        raise bad_request(f"messages.{i}.content is required", param=f"messages.{i}.content")
    if isinstance(m.content, list):
        for j, part in enumerate(m.content):
            if part.type != "text" or part.text is None:
                what = "image" if "image" in part.type else "audio" if "audio" in part.type else part.type
                raise bad_request(f"messages.{i}.content.{j}: {what} parts are not supported: this server serves a "
                                  "text model (send text parts)", param=f"messages.{i}.content.{j}",
                                  code="unsupported_parameter")


class CompressRequest(BaseModel):
    """Body of POST /v1/tokenzip/compress (the page): run the prompt and kv stages on a text, report what each kept,
    and answer the question from the compressed and from the uncompressed context."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)
    question: str | None = None
    compression: str = "prompt:extractive@0.5"
    model: str | None = None
    max_tokens: int = Field(32, ge=1, le=256)


def parse(schema: type[BaseModel], body: Any) -> Any:
    """``body`` validated against ``schema``; 400 with an OpenAI error naming the client's field when it is not."""
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object", code="invalid_json")
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = error_param(first["loc"])
        if first["type"] == "extra_forbidden":
            raise bad_request(f"Unrecognized request argument supplied: {param}", param=param,
                              code="unrecognized_argument") from None
        raise bad_request(f"{param or 'body'}: {first['msg']}", param=param) from None


_UNION_TAGS = ("str", "int", "float", "bool", "none", "dict", "list")


def error_param(loc: tuple[Any, ...]) -> str | None:
    """The client's field a pydantic error location points at (``messages.0.content``): the location without the
    names pydantic gives the alternatives of a union (``str``, ``list[ContentPart]``)."""
    parts = [str(p) for p in loc if p != "body" and not (isinstance(p, str) and ("[" in p or p in _UNION_TAGS))]
    return ".".join(parts) or None

"""Request bodies: WePrompt 1.0's `/generate-response` and OpenAI's chat completions.

Unknown fields are ignored (OpenAI clients send many we have no use for); the fields we
read are typed strictly (a number must be a JSON number, never the string "0.5"; NaN
and Infinity are refused), and `check` applies the server's limits with messages that
name the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from weprompt_cli.server.errors import APIError
from weprompt_cli.server.settings import Limits

Id = StrictStr | StrictInt
# A JSON number (an integer is fine), finite: NaN, Infinity, true and "0.5" are refused.
Number = Annotated[StrictFloat, Field(allow_inf_nan=False)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SamplingExtras(_Body):
    """Optional sampling fields (extensions on /generate-response, standard on OpenAI's)."""

    temperature: Number | None = Field(None, ge=0, le=10)
    top_p: Number | None = Field(None, ge=0, le=1)
    top_k: StrictInt | None = Field(None, ge=0)
    max_tokens: StrictInt | None = Field(None, ge=1)
    seed: StrictInt | None = Field(None, ge=0)
    presence_penalty: Number | None = Field(None, ge=-2, le=2)
    frequency_penalty: Number | None = Field(None, ge=-2, le=2)

    def overrides(self, limits: Limits) -> dict[str, Any]:
        """The sampling settings this request sets (max_tokens clamped to the server's cap)."""
        out = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "max_tokens": self.requested_max_tokens(),
        }
        if out["max_tokens"] is not None:
            out["max_tokens"] = min(out["max_tokens"], limits.max_tokens_cap)
        return {k: v for k, v in out.items() if v is not None}

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens


class GenerateRequest(SamplingExtras):
    """WePrompt 1.0's body; the sampling fields are optional extensions."""

    user_message: StrictStr
    user_id: Id
    discussion_id: Id
    prompt_file: StrictStr | None = None  # SQLAdvisor, ProjectAdvisor or any persona name

    def check(self, limits: Limits) -> None:
        if not self.user_message.strip():
            raise APIError(400, "user_message is empty", param="user_message")
        if len(self.user_message) > limits.max_message_chars:
            raise APIError(
                413,
                f"user_message has {len(self.user_message)} characters; at most {limits.max_message_chars} are allowed",
                param="user_message",
            )


class TextPart(_Body):
    type: Literal["text"]
    text: StrictStr


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class StreamOptions(_Body):
    include_usage: StrictBool = False


class ChatCompletionRequest(SamplingExtras):
    """OpenAI's chat completion body, plus `persona` and `session` (WePrompt extensions)."""

    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    stop: StrictStr | list[StrictStr] | None = None
    n: StrictInt | None = Field(None, ge=1)
    user: str | None = None
    persona: StrictStr | None = None  # a persona's prompt (and its cached state) instead of a system message
    session: StrictStr | None = None  # bind to a stored session: its last user message is sent into it
    # Thinking (G1 models): WePrompt's `think` (off, on, bit, lot) or OpenAI's `reasoning_effort`.
    think: Literal["off", "on", "bit", "lot"] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None

    def think_mode(self) -> str | None:
        """The thinking mode this request asks for (None: the session's or the default)."""
        if self.think is not None:
            return self.think
        efforts = {"none": "off", "minimal": "off", "low": "bit", "medium": "on", "high": "lot"}
        return efforts.get(self.reasoning_effort) if self.reasoning_effort else None

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        return tuple(s for s in stops if s)

    def check(self, limits: Limits) -> None:
        if self.n not in (None, 1):
            raise APIError(400, "only n=1 is supported (one model, one answer per request)", param="n")
        if len(self.messages) > limits.max_messages:
            raise APIError(413, f"{len(self.messages)} messages; at most {limits.max_messages} are allowed",
                           param="messages")
        total = 0
        for i, message in enumerate(self.messages):
            size = len(message.text())
            total += size
            if size > limits.max_message_chars:
                raise APIError(
                    413,
                    f"message {i} has {size} characters; at most {limits.max_message_chars} are allowed",
                    param=f"messages.{i}.content",
                )
        if total > limits.max_total_chars:
            raise APIError(413, f"the messages have {total} characters together; at most {limits.max_total_chars}",
                           param="messages")
        if self.messages[-1].role != "user" or not self.messages[-1].text().strip():
            raise APIError(400, "the last message must be a non-empty user message", param="messages")
        if self.stop is not None and len(self.stops()) > 8:
            raise APIError(400, "at most 8 stop strings", param="stop")

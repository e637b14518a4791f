"""`ChatModel`: the model that writes an answer, behind an OpenAI-compatible chat completions API.

Ollama, vLLM, llama.cpp's server and Doubao Ark all speak `POST {base}/chat/completions`, so one
client serves them all: the base URL, model and key come from settings (`LOOKALIKE_LLM_*`).

A stream is opened before the first token is read: connecting, retrying and the status check
all happen in `open_stream`, so a model that is down is a 503 before an HTTP answer has begun,
and only a failure half-way through an answer reaches the reader of the stream. Retries (with
jittered exponential back-off) cover what another try can fix: connection errors, timeouts,
5xx, and 429 after the `Retry-After` it names; a refused key or an unknown model is reported at
once.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from lookalike.core.backoff import jittered_backoff, retry_after_seconds
from lookalike.core.config import Settings
from lookalike.core.errors import ChatModelRefused, ChatModelUnavailable

log = logging.getLogger(__name__)

Message = dict[str, Any]

_BACKOFF_BASE_S = 1.0
_MAX_BACKOFF_S = 8.0
_MAX_RETRY_AFTER_S = 30.0
_ERROR_BODY_CHARS = 300


@dataclass(frozen=True)
class ChatAnswer:
    text: str
    # "stop", or "length" when the answer ran into the token limit.
    finish_reason: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ChatStream(ABC):
    """An answer arriving piece by piece: iterate for the text deltas, close when done."""

    finish_reason: str | None = None

    @abstractmethod
    def __iter__(self) -> Iterator[str]: ...

    @abstractmethod
    def close(self) -> None: ...


class ChatModel(ABC):
    """A chat model: `model` is its name, `url` where it is served (shown in errors)."""

    model: str
    url: str

    @abstractmethod
    def complete(self, messages: list[Message], *, max_tokens: int) -> ChatAnswer: ...

    @abstractmethod
    def open_stream(self, messages: list[Message], *, max_tokens: int) -> ChatStream: ...

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def open_chat_model(settings: Settings) -> ChatModel | None:
    """The configured chat model, or None when `LOOKALIKE_LLM_URL` / `_MODEL` are unset."""
    if not settings.llm_url or not settings.llm_model:
        return None
    return OpenAICompatibleChat(
        settings.llm_url,
        settings.llm_model,
        api_key=settings.llm_api_key,
        timeout_s=settings.llm_timeout_s,
        retries=settings.llm_retries,
        temperature=settings.llm_temperature,
    )


class OpenAICompatibleChat(ChatModel):
    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 2,
        temperature: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._temperature = temperature
        self.model = model
        self._retries = retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # A slow first token is the model thinking: the read timeout covers the gap between
        # any two pieces of the answer, not the whole answer.
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            transport=transport,
        )

    def complete(self, messages: list[Message], *, max_tokens: int) -> ChatAnswer:
        response = self._send(messages, max_tokens=max_tokens, stream=False)
        try:
            response.read()
            body = response.json()
            choice = body["choices"][0]
            text = choice["message"]["content"] or ""
            usage = body.get("usage") or {}
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise ChatModelUnavailable(
                f"chat model {self.model!r} at {self.url} stopped answering half-way "
                f"({_describe(exc)})"
            ) from None
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ChatModelRefused(
                f"chat model {self.model!r} at {self.url} sent an answer that is not a chat "
                f"completion ({exc.__class__.__name__}: {response.text[:_ERROR_BODY_CHARS]!r})"
            ) from None
        finally:
            response.close()
        return ChatAnswer(
            text=str(text),
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    def open_stream(self, messages: list[Message], *, max_tokens: int) -> ChatStream:
        return _SseChatStream(self, self._send(messages, max_tokens=max_tokens, stream=True))

    def close(self) -> None:
        self._client.close()

    def _send(self, messages: list[Message], *, max_tokens: int, stream: bool) -> httpx.Response:
        """The response with a 2xx status, its body not read yet; retried as the docstring says."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self._temperature,
            "stream": stream,
        }
        endpoint = f"{self.url}/chat/completions"
        attempt = 0
        while True:
            request = self._client.build_request("POST", endpoint, json=body)
            try:
                response = self._client.send(request, stream=True)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if attempt >= self._retries:
                    raise ChatModelUnavailable(
                        f"chat model {self.model!r} at {self.url} cannot be reached "
                        f"({_describe(exc)}); try again when it is back"
                    ) from None
                wait = jittered_backoff(attempt + 1, _BACKOFF_BASE_S, _MAX_BACKOFF_S)
            else:
                if response.is_success:
                    return response
                response.read()
                response.close()
                self._refuse_for_good(response)
                if attempt >= self._retries:
                    raise ChatModelUnavailable(
                        f"chat model {self.model!r} at {self.url} keeps failing "
                        f"(HTTP {response.status_code}: {_error_text(response)})"
                    )
                asked = _retry_after(response)
                wait = (
                    jittered_backoff(attempt + 1, _BACKOFF_BASE_S, _MAX_BACKOFF_S)
                    if asked is None
                    else asked
                )
            attempt += 1
            log.warning(
                "chat model %s at %s failed; try %d of %d in %.1f s",
                self.model,
                self.url,
                attempt + 1,
                self._retries + 1,
                wait,
            )
            time.sleep(wait)

    def _refuse_for_good(self, response: httpx.Response) -> None:
        status = response.status_code
        if status in (401, 403):
            raise ChatModelRefused(
                f"chat model endpoint {self.url} refused the key (HTTP {status}): check "
                "LOOKALIKE_LLM_API_KEY"
            )
        if status == 404:
            raise ChatModelRefused(
                f"chat model endpoint {self.url} has no model {self.model!r} or no "
                f"/chat/completions (HTTP 404: {_error_text(response)}): check LOOKALIKE_LLM_URL "
                "and LOOKALIKE_LLM_MODEL"
            )
        if 400 <= status < 500 and status not in (408, 409, 429):
            raise ChatModelRefused(
                f"chat model {self.model!r} at {self.url} refused the request "
                f"(HTTP {status}: {_error_text(response)})"
            )


class _SseChatStream(ChatStream):
    """Server-sent events: `data: {chunk}` lines, `data: [DONE]` at the end."""

    def __init__(self, chat: OpenAICompatibleChat, response: httpx.Response) -> None:
        self._chat = chat
        self._response = response

    def __iter__(self) -> Iterator[str]:
        try:
            for line in self._response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                delta = self._delta(data)
                if delta:
                    yield delta
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise ChatModelUnavailable(
                f"chat model {self._chat.model!r} at {self._chat.url} stopped answering "
                f"half-way ({_describe(exc)})"
            ) from None
        finally:
            self.close()

    def _delta(self, data: str) -> str:
        try:
            chunk = json.loads(data)
            choices = chunk.get("choices") or []
            if not choices:
                return ""  # a usage-only chunk
            choice = choices[0]
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            return str((choice.get("delta") or {}).get("content") or "")
        except (ValueError, AttributeError, TypeError):
            raise ChatModelRefused(
                f"chat model {self._chat.model!r} at {self._chat.url} streamed something that "
                f"is not a chat completion chunk: {data[:_ERROR_BODY_CHARS]!r}"
            ) from None

    def close(self) -> None:
        self._response.close()


def _retry_after(response: httpx.Response) -> float | None:
    if response.status_code != 429:
        return None
    seconds = retry_after_seconds(response.headers.get("retry-after"))
    return None if seconds is None else min(_MAX_RETRY_AFTER_S, seconds)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:_ERROR_BODY_CHARS]
        if isinstance(error, str):
            return error[:_ERROR_BODY_CHARS]
    except ValueError:
        pass
    return response.text[:_ERROR_BODY_CHARS] or response.reason_phrase


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out: {exc.__class__.__name__}"
    return str(exc) or exc.__class__.__name__

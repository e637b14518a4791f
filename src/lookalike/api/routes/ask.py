"""Questions answered from a collection's pages and images, with citations (image RAG)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from lookalike.api.deps import Caller, Runtime
from lookalike.api.forms import openapi_body
from lookalike.api.schemas import AskRequest, AskResponse, AskSourceOut, CitationOut
from lookalike.core.errors import LookalikeError
from lookalike.rag.ask import (
    AskResult,
    Retrieval,
    ask,
    finish,
    open_answer,
    retrieve,
    without_answer,
)
from lookalike.rag.chat import ChatStream
from lookalike.serving.bodies import json_body

router = APIRouter(prefix="/api", tags=["ask"])


@router.post(
    "/ask",
    openapi_extra=openapi_body(json_model=AskRequest),
    responses={
        200: {
            "description": "The answer (JSON), or with `stream: true` server-sent events.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        503: {"description": "The chat model cannot be reached (`llm_unavailable`)."},
    },
)
async def ask_question(request: Request, rt: Runtime, caller: Caller) -> AskResponse:
    """Retrieve the pages and images that answer `question` (hybrid search), have the chat
    model (LOOKALIKE_LLM_URL) answer from them, and cite the sources. With no model configured:
    the retrieval alone, and a note saying so."""
    body = await json_body(request, AskRequest)
    if not body.stream:

        def run() -> AskResponse:
            return _response(
                ask(
                    rt, caller.tenant, body.collection, body.question, rt.chat,
                    filters=body.filter, k=body.k, mode=body.mode,
                )
            )  # fmt: skip

        return await run_in_threadpool(run)

    def start() -> tuple[Retrieval, ChatStream | None]:
        found = retrieve(
            rt, caller.tenant, body.collection, body.question, filters=body.filter, k=body.k,
            mode=body.mode, vision=rt.settings.llm_vision,
        )  # fmt: skip
        # Opened here, before the answer begins: a model that is down is still a 503.
        return found, (open_answer(rt, found, rt.chat) if rt.chat is not None else None)

    found, stream = await run_in_threadpool(start)
    return StreamingResponse(  # type: ignore[return-value]
        _events(rt, found, stream),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _events(rt: Runtime, found: Retrieval, stream: ChatStream | None) -> Iterator[str]:
    yield _event("sources", {"sources": [_source(s) for s in found.sources], "mode": found.mode})
    if stream is None:
        yield _event("done", _response(without_answer(found)).model_dump(mode="json"))
        return
    pieces: list[str] = []
    try:
        for piece in stream:
            pieces.append(piece)
            yield _event("delta", {"text": piece})
    except LookalikeError as exc:
        yield _event("error", {"error": {"code": exc.code, "message": exc.message}})
        return
    finally:
        stream.close()
    done = finish(found, rt.chat, "".join(pieces), stream.finish_reason)
    yield _event("done", _response(done).model_dump(mode="json"))


def _event(name: str, data: object) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _source(source: object) -> dict[str, object]:
    return AskSourceOut.model_validate(source).model_dump(mode="json")


def _response(result: AskResult) -> AskResponse:
    return AskResponse(
        question=result.question,
        answer=result.answer,
        model=result.model,
        citations=[CitationOut.model_validate(c) for c in result.citations],
        sources=[AskSourceOut.model_validate(s) for s in result.sources],
        mode=result.mode,
        notes=result.notes,
    )

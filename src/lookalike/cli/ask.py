"""`lookalike ask`: a question answered from a collection's pages and images, with citations."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from lookalike.api.schemas import AskSourceOut, CitationOut
from lookalike.auth.tokens import DEFAULT_TENANT
from lookalike.cli.common import (
    CollectionOpt,
    DataDir,
    TenantOpt,
    console,
    load_settings,
    open_runtime,
    out,
)
from lookalike.core.errors import InvalidInput


def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    collection: CollectionOpt,
    k: Annotated[int, typer.Option("--k", help="Pages or images to retrieve.", min=1, max=50)] = 5,
    mode: Annotated[
        str, typer.Option("--mode", help="Retrieval: vector, keyword or hybrid (the default).")
    ] = "hybrid",
    tenant: TenantOpt = DEFAULT_TENANT,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json", help="Print {answer, model, citations, sources, mode, notes} as JSON."
        ),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Answer QUESTION from the collection's documents and images (LOOKALIKE_LLM_URL and
    LOOKALIKE_LLM_MODEL name the chat model; without them, the retrieved pages are listed)."""
    from lookalike.rag.ask import AskResult, finish, open_answer, retrieve, where, without_answer
    from lookalike.search.service import SEARCH_MODES

    if mode not in SEARCH_MODES:
        raise InvalidInput(f"--mode must be one of {', '.join(SEARCH_MODES)}")
    settings = load_settings(data_dir)
    with open_runtime(settings) as rt:
        found = retrieve(
            rt, tenant, collection, question, k=k, mode=mode,  # type: ignore[arg-type]
            vision=settings.llm_vision,
        )  # fmt: skip
        result: AskResult
        if rt.chat is None:
            result = without_answer(found)
        else:
            stream = open_answer(rt, found, rt.chat)
            pieces = []
            try:
                for piece in stream:
                    pieces.append(piece)
                    if not json_out:
                        out.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
            finally:
                stream.close()
            if not json_out:
                out.print()
            result = finish(found, rt.chat, "".join(pieces), stream.finish_reason)
    if json_out:
        answer = {
            "question": result.question,
            "answer": result.answer,
            "model": result.model,
            "citations": [
                CitationOut.model_validate(c).model_dump(mode="json") for c in result.citations
            ],
            "sources": [
                AskSourceOut.model_validate(s).model_dump(mode="json") for s in result.sources
            ],
            "mode": result.mode,
            "notes": result.notes,
        }
        out.print_json(json.dumps(answer))
        return
    if result.citations:
        console.print("\nSources cited:")
        for c in result.citations:
            console.print(
                f"  [{c.source}] {where(c)} (image {c.image_id}): {c.text}",
                markup=False,
                highlight=False,
            )
    elif result.answer is None:
        console.print("Retrieved:")
        for s in result.sources:
            console.print(
                f"  [{s.number}] {where(s)} (image {s.image_id}, score {s.score:.4f})",
                markup=False,
                highlight=False,
            )
    for note in result.notes:
        console.print(note, markup=False, highlight=False)

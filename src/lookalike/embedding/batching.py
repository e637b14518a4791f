"""Coalesce concurrent single queries into one model call.

A search embeds one text or one image. Under load many searches wait for the model at once; run
one by one, each pays the model's per-call overhead and leaves cores idle between calls. Here
each query joins a queue and one thread per kind runs whatever has gathered as one batch: no
waiting window, so a lone query is not delayed, and batches grow by themselves under load.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from lookalike.embedding.base import Embedder

_STOP = object()


class QueryBatcher:
    """Thread-safe: `embed_text` and `embed_image` may be called from many threads."""

    def __init__(self, embedder: Embedder, *, max_batch: int = 16) -> None:
        self.embedder = embedder
        self.max_batch = max_batch
        self._queues: dict[str, queue.Queue[Any]] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def embed_text(self, text: str) -> NDArray[np.float32]:
        return self._submit("text", text)

    def embed_image(self, image: Image.Image) -> NDArray[np.float32]:
        # Preprocessing runs here, in the caller's thread, in parallel with other callers.
        return self._submit("image", self.embedder.preprocess(image))

    def close(self) -> None:
        with self._lock:
            for q in self._queues.values():
                q.put(_STOP)
            threads, self._threads = self._threads, []
            self._queues = {}
        for t in threads:
            t.join()

    def _submit(self, kind: str, item: Any) -> NDArray[np.float32]:
        future: Future[NDArray[np.float32]] = Future()
        self._queue(kind).put((item, future))
        return future.result()

    def _queue(self, kind: str) -> queue.Queue[Any]:
        with self._lock:
            q = self._queues.get(kind)
            if q is None:
                q = self._queues[kind] = queue.Queue()
                t = threading.Thread(
                    target=self._run, args=(kind, q), name=f"query-{kind}", daemon=True
                )
                t.start()
                self._threads.append(t)
            return q

    def _run(self, kind: str, q: queue.Queue[Any]) -> None:
        while True:
            first = q.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            items = [item for item, _ in batch]
            try:
                if kind == "text":
                    vectors = self.embedder.embed_texts(items)
                else:
                    vectors = self.embedder.embed_preprocessed(np.stack(items))
            except BaseException as exc:
                for _, future in batch:
                    future.set_exception(exc)
            else:
                for (_, future), vector in zip(batch, vectors, strict=True):
                    future.set_result(vector)
            if stop:
                return

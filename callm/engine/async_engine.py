"""AsyncLLMEngine: the LLMEngine driven by one background thread, one async stream per request.

Model steps are long, blocking CPU work, so they run on a thread of their own and the event
loop stays free for HTTP. Requests and aborts reach that thread through a queue; outputs come
back to each request's asyncio queue. A consumer that stops listening (a client that
disconnects, a cancelled task) aborts its request, which frees its KV blocks.
"""

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator

from callm.engine.llm_engine import LLMEngine
from callm.engine.request import RequestOutput
from callm.engine.sampling_params import SamplingParams

logger = logging.getLogger(__name__)

HEALTH_CHECK_INTERVAL_S = 1.0  # while idle, how often the loop checks the workers are alive


class EngineDeadError(RuntimeError):
    """The engine loop failed; requests cannot be served until restart."""


class AsyncLLMEngine:
    def __init__(self, engine: LLMEngine):
        self.engine = engine
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._wakeup = threading.Event()
        self._streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._stopped = False
        self.dead_error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="callm-engine", daemon=True)
        self._thread.start()

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def healthy(self) -> bool:
        return self.dead_error is None and self._thread.is_alive()

    async def generate(self, prompt: str | list[int], params: SamplingParams, request_id: str,
                       add_special_tokens: bool = True) -> AsyncIterator[RequestOutput]:
        """Stream the request's outputs until it finishes; raises ValueError for a bad request."""
        if not self.healthy:
            raise EngineDeadError(f"the engine has stopped: {self.dead_error}")
        stream: asyncio.Queue = asyncio.Queue()
        self._streams[request_id] = (asyncio.get_running_loop(), stream)
        self._send(("add", request_id, prompt, params, add_special_tokens))
        finished = False
        try:
            while True:
                item = await stream.get()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield item
                if finished:
                    return
        finally:
            self._streams.pop(request_id, None)
            if not finished:
                self._send(("abort", request_id))

    def abort(self, request_id: str) -> None:
        self._send(("abort", request_id))

    def shutdown(self) -> None:
        self._stopped = True
        self._wakeup.set()
        self._thread.join(timeout=30)
        self.engine.shutdown()

    # ----- engine thread -----

    def _send(self, command: tuple) -> None:
        self._commands.put(command)
        self._wakeup.set()

    def _deliver(self, request_id: str, item) -> None:
        target = self._streams.get(request_id)
        if target is not None:
            loop, stream = target
            loop.call_soon_threadsafe(stream.put_nowait, item)

    def _apply_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            if command[0] == "add":
                _, request_id, prompt, params, add_special_tokens = command
                try:
                    self.engine.add_request(request_id, prompt, params, add_special_tokens)
                except ValueError as e:
                    self._deliver(request_id, e)
            else:
                self.engine.abort_request(command[1])

    def _loop(self) -> None:
        try:
            while not self._stopped:
                self._apply_commands()
                if not self.engine.has_unfinished_requests():
                    # idle: a worker that dies now still turns /health unhealthy
                    if not self._wakeup.wait(HEALTH_CHECK_INTERVAL_S):
                        self.engine.check_health()
                    self._wakeup.clear()
                    continue
                for output in self.engine.step():
                    self._deliver(output.request_id, output)
        except BaseException as e:  # a bug or a dead worker: fail every stream, loudly
            logger.exception("engine loop failed")
            self.dead_error = e
            for request_id in list(self._streams):
                self._deliver(request_id, EngineDeadError(f"the engine failed: {e}"))

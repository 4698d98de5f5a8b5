"""Run a function's ``lambda_handler`` in this process the way Lambda runs it (contract §1).

``functions/<name>`` and every ``layers/*/python`` folder are on ``sys.path``, the function's own
environment is set for its import (the cold start) and for each invocation, the context object carries a
real deadline, and ``app`` is imported under a private module name so that two functions' ``app.py`` (and
their sibling modules) never meet in ``sys.modules``. Rule targets that are Lambda functions are
delivered from the SQS queue standing in for them, with Lambda's asynchronous retries.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final, TextIO

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_ACCOUNT_ID: Final = "123456789012"
# Lambda retries a failed asynchronous invocation twice unless told otherwise (EventBridge targets are
# asynchronous).
ASYNC_ATTEMPTS: Final = 3

Handler = Callable[[Any, Any], Any]


@dataclass
class LambdaContext:
    """The attributes of the Python runtime's context object that handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    deadline: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None
    monotonic: Callable[[], float] = time.monotonic

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - self.monotonic()) * 1000))


def layer_paths(root: Path = REPO_ROOT) -> list[Path]:
    return sorted(path for path in (root / "layers").glob("*/python") if path.is_dir())


@dataclass(frozen=True)
class Invocation:
    """One handler call: its result, or the exception it raised (as text: type and message)."""

    request_id: str
    result: Any = None
    error: str | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class LambdaFunction:
    """One function of the stack, loaded lazily on its first invocation (its cold start)."""

    def __init__(
        self,
        code_uri: str | Path,
        *,
        environment: Mapping[str, str],
        handler: str = "app.lambda_handler",
        function_name: str | None = None,
        timeout_seconds: float = 60.0,
        memory_mb: int = 128,
        region: str = "us-east-1",
        account_id: str = DEFAULT_ACCOUNT_ID,
        root: Path = REPO_ROOT,
        output: TextIO | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        max_retry_attempts: int = ASYNC_ATTEMPTS - 1,
    ) -> None:
        self.directory = (root / code_uri).resolve()
        self.name = self.directory.name
        module, _, self.handler_name = handler.rpartition(".")
        self.module_file = module.replace(".", "/") + ".py"
        self.environment = dict(environment)
        self.function_name = function_name or f"comms-bridge-{self.name}"
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self.region = region
        self.arn = f"arn:aws:lambda:{region}:{account_id}:function:{self.function_name}"
        self._layers = [str(path) for path in layer_paths(root)]
        self._output = output
        self._monotonic = monotonic
        # EventInvokeConfig.MaximumRetryAttempts: how often an asynchronous invocation is retried.
        self.async_attempts = max_retry_attempts + 1
        self._module: ModuleType | None = None
        self._private_modules: dict[str, ModuleType] = {}
        self.invocations: list[Invocation] = []

    # -- the execution environment ---------------------------------------------------------------

    def _lambda_environment(self) -> dict[str, str]:
        return {
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "LAMBDA_TASK_ROOT": str(self.directory),
            **self.environment,
        }

    @contextlib.contextmanager
    def _inside(self) -> Iterator[None]:
        """The function's environment, paths and private modules for the duration of a call."""
        saved_env = dict(os.environ)
        saved_path = list(sys.path)
        os.environ.update(self._lambda_environment())
        for entry in [str(self.directory), *self._layers]:
            if entry not in sys.path:
                sys.path.insert(0, entry)
        sys.modules.update(self._private_modules)
        redirect: contextlib.ExitStack = contextlib.ExitStack()
        if self._output is not None:
            redirect.enter_context(contextlib.redirect_stdout(self._output))
            redirect.enter_context(contextlib.redirect_stderr(self._output))
        try:
            with redirect:
                yield
        finally:
            for module_name in self._private_modules:
                sys.modules.pop(module_name, None)
            sys.path[:] = saved_path
            # Put back key by key: server threads of this process (moto, the simulator) read the
            # environment too, and must never see it empty.
            for key in set(os.environ) - set(saved_env):
                del os.environ[key]
            for key, value in saved_env.items():
                if os.environ.get(key) != value:
                    os.environ[key] = value

    def _load(self) -> ModuleType:
        app_path = self.directory / self.module_file
        if not app_path.is_file():
            raise FileNotFoundError(f"no handler module at {app_path}")
        module_name = f"_lambda_{self.name}_{app_path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, app_path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {app_path}")
        module = importlib.util.module_from_spec(spec)
        before = set(sys.modules)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        finally:
            sys.modules.pop(module_name, None)
        # Sibling modules of app.py belong to this function only: keep them out of the shared namespace.
        for added in set(sys.modules) - before:
            origin = getattr(sys.modules[added], "__file__", None)
            if origin and Path(origin).resolve().is_relative_to(self.directory):
                self._private_modules[added] = sys.modules.pop(added)
        return module

    @property
    def loaded(self) -> bool:
        return self._module is not None

    def context(self) -> LambdaContext:
        return LambdaContext(
            function_name=self.function_name,
            invoked_function_arn=self.arn,
            memory_limit_in_mb=self.memory_mb,
            deadline=self._monotonic() + self.timeout_seconds,
            log_group_name=f"/aws/lambda/{self.function_name}",
            log_stream_name=time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex,
            monotonic=self._monotonic,
        )

    def invoke(self, event: Any) -> Invocation:
        """Call ``lambda_handler(event, context)``; the event goes through JSON as Lambda's does."""
        payload = json.loads(json.dumps(event))
        context = self.context()
        result: Any = None
        error: str | None = None
        started = time.perf_counter()
        with self._inside():
            try:
                if self._module is None:
                    self._module = self._load()
                handler: Handler = getattr(self._module, self.handler_name)
                result = json.loads(json.dumps(handler(payload, context)))
            except Exception as exc:
                # Lambda logs the stack trace of a failed invocation; so does this runtime.
                traceback.print_exc(file=sys.stderr)
                error = f"{type(exc).__name__}: {exc}"
        invocation = Invocation(
            context.aws_request_id,
            result=result,
            error=error,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        self.invocations.append(invocation)
        return invocation


@dataclass(frozen=True)
class Delivery:
    """An EventBridge event taken from a rule target's queue and the invocations it took."""

    event: dict[str, Any]
    attempts: list[Invocation]

    @property
    def ok(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].ok


def as_delivered(event: dict[str, Any], *, account_id: str = DEFAULT_ACCOUNT_ID) -> dict[str, Any]:
    """The event as EventBridge hands it to a target. moto's rule-to-SQS delivery drops ``account``,
    which every real event carries (and handlers may require)."""
    return {"account": account_id, **event}


def deliver_event(function: LambdaFunction, event: dict[str, Any]) -> Delivery:
    """An asynchronous invocation: retried on error as the function's retry setting says (Lambda's default:
    twice), then given up (Lambda would hand it to the function's on-failure destination)."""
    made: list[Invocation] = []
    for _ in range(function.async_attempts):
        invocation = function.invoke(event)
        made.append(invocation)
        if invocation.ok:
            break
    return Delivery(event=event, attempts=made)

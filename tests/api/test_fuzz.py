"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis): no 500, and no
answer that its document does not describe. Bounded and deterministic: a fixed number of examples per
operation, derandomized, no example database; the limits are lowered so that the few bodies valid enough
to run make a 64×64 one-step image."""

from __future__ import annotations

import asyncio

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

EXAMPLES = 15  # per operation: about 500 requests in all
TINY = {"max_width": 64, "max_height": 64, "max_steps": 1, "max_batch_size": 1, "max_batch_count": 1,
        "max_hires_scale": 1.0}  # fmt: skip


def fuzz(base_url: str) -> list[str]:
    document = requests.get(f"{base_url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    for found in schema.get_all_operations():
        operation = found.ok()

        @hypothesis.settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy())
        def run(case) -> None:
            case.call_and_validate(
                base_url=base_url, checks=[not_a_server_error, response_schema_conformance]
            )

        try:
            run()
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # hypothesis raises a group: collect each operation's, report all
            failures.append(f"{operation.method.upper()} {operation.path}: {error}")
    return failures


async def test_no_500_and_no_answer_outside_the_document(serve):
    api = await serve(limits=TINY)
    failures = await asyncio.to_thread(fuzz, api.url)
    assert not failures, "\n\n".join(failures)

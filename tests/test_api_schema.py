"""
Schemathesis against our own OpenAPI schema: requests generated from it, both
valid and invalid, to every operation, as the owner. No answer may be a 5xx,
and every answer must match the schema (its status code documented, its body
and content type as described). A few examples per operation and mode keep
the run well under a minute.
"""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import SubscriptionFactory
from tests.sending_factories import BroadcastFactory, SMTPBackendFactory

pytestmark = pytest.mark.slow
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 3  # per operation and mode: about 600 requests, under a minute on the 2-core machine


@pytest.fixture
def api_schema(db):
    # Requests go straight to the WSGI app, in this thread and this test's transaction; as Django's
    # test client does, keep the handler from closing the test's database connection after each one.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def owner_token(alice, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {}}
    # Some rows to find, so that generated ids sometimes hit a real object.
    subscription = SubscriptionFactory()
    BroadcastFactory(lists=[subscription.mailing_list])
    SMTPBackendFactory(host="127.0.0.1", port=1)
    return Token.objects.create(user=alice).key


def _exercise(operation, mode, headers):
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case):
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


def test_api_answers_generated_requests_within_its_schema(api_schema, owner_token):
    failures, operations = [], 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _exercise(operation, mode, {"Authorization": f"Token {owner_token}"})
            except (Exception, BaseExceptionGroup) as exc:  # collect them all: one report for every failing operation
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert operations > 60
    assert not failures, "\n\n".join(failures)

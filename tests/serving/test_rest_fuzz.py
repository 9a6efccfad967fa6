"""Malformed REST payloads never produce a 500 or kill the server; errors are JSON {"error"}."""
from __future__ import annotations

import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.conftest import MODEL, push

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS | st.fixed_dictionaries({"b64": st.text(max_size=30)}),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
PREDICT_BODIES = st.fixed_dictionaries(
    {}, optional={"instances": JSON_VALUES, "inputs": JSON_VALUES,
                  "signature_name": st.sampled_from(["", "serving_default", "serving_tensor",
                                                     "serving_examples", "nope"]) | JSON_SCALARS,
                  "examples": JSON_VALUES, "context": JSON_VALUES})
PATHS = st.sampled_from([f"/v1/models/{MODEL}:predict", f"/v1/models/{MODEL}:classify",
                         f"/v1/models/{MODEL}:regress", f"/v1/models/{MODEL}/versions/1:predict",
                         f"/v1/models/{MODEL}/labels/x:predict", "/v1/models/other:predict"])


@pytest.fixture(scope="module")
def rest_url(tmp_path_factory, toy_versions):
    from visionpipe.serving.options import ServerOptions
    from visionpipe.serving.server import ModelServer

    base = tmp_path_factory.mktemp("fuzz") / MODEL
    base.mkdir()
    push(base, 1, toy_versions[1])
    with ModelServer(ServerOptions(port=0, rest_api_port=0, model_name=MODEL, model_base_path=str(base),
                                   file_system_poll_wait_seconds=0, max_request_bytes=100_000)) as server:
        yield f"http://127.0.0.1:{server.rest_port}"


def check(response):
    assert response.status_code != 500 and response.status_code in (200, 400, 404, 429), response.text
    body = response.json()
    if response.status_code != 200:
        assert set(body) == {"error"} and body["error"], body


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


@FUZZ
@given(path=PATHS, body=PREDICT_BODIES)
def test_structured_garbage_is_answered_with_a_clear_error(rest_url, path, body):
    check(requests.post(rest_url + path, data=json.dumps(body), timeout=30))


@FUZZ
@given(path=PATHS, raw=st.binary(max_size=300))
def test_arbitrary_bytes_are_answered_with_a_clear_error(rest_url, path, raw):
    check(requests.post(rest_url + path, data=raw, timeout=30))


@FUZZ
@given(pixels=st.lists(st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(),
                                         min_size=3, max_size=3), min_size=1, max_size=3), min_size=1, max_size=3))
def test_float_signature_with_arbitrary_numbers_never_fails_the_server(rest_url, pixels):
    body = json.dumps({"signature_name": "serving_tensor", "instances": [pixels]})  # NaN allowed
    check(requests.post(rest_url + f"/v1/models/{MODEL}:predict", data=body, timeout=30))


def test_server_still_answers_after_fuzzing(rest_url):
    assert requests.get(rest_url + f"/v1/models/{MODEL}", timeout=10).status_code == 200

"""The node's OpenAI-compatible API driven by the official `openai` Python SDK.

Run by tests/tests/openai_sdk.rs against a real node serving SmolLM2 (chat), all-MiniLM-L6-v2
(embeddings) and the rapidocr classifier (tensors). Environment:
CYXWIZ_BASE_URL (http://host:port/v1), CYXWIZ_API_KEY (unrestricted), CYXWIZ_LIMITED_KEY
(rpm 3), CYXWIZ_EMBED_ONLY_KEY (models = embed), CYXWIZ_MODELS_DIR.
"""
import base64
import json
import os
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI

BASE = os.environ["CYXWIZ_BASE_URL"]
KEY = os.environ["CYXWIZ_API_KEY"]
MODELS = Path(os.environ["CYXWIZ_MODELS_DIR"])


def client(key=KEY):
    return OpenAI(base_url=BASE, api_key=key, max_retries=0, timeout=120)


def raw(method, path, **kw):
    headers = kw.pop("headers", {"Authorization": f"Bearer {KEY}"})
    return httpx.request(method, BASE.rsplit("/v1", 1)[0] + path, headers=headers,
                         timeout=120, **kw)


CHAT = [{"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name three colours."}]


def test_models_list_shows_deployments_and_aliases():
    ids = {m.id for m in client().models.list()}
    assert {"chat", "smollm2", "embed", "classifier"} <= ids, ids
    assert client().models.retrieve("smollm2").id == "smollm2"


def test_chat_plain():
    r = client().chat.completions.create(model="chat", messages=CHAT, max_tokens=24,
                                         temperature=0)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 10
    assert 0 < r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_follows_openai_chunk_rules():
    plain = client().chat.completions.create(model="chat", messages=CHAT, max_tokens=24,
                                             temperature=0)
    chunks = list(client().chat.completions.create(
        model="chat", messages=CHAT, max_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1, "one id for all chunks"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    choice_chunks = [c for c in chunks if c.choices]
    finishes = [c.choices[0].finish_reason for c in choice_chunks]
    assert all(f is None for f in finishes[:-1]) and finishes[-1] in ("stop", "length")
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in choice_chunks)
    assert text == plain.choices[0].message.content, "greedy stream equals greedy answer"
    assert last.usage.completion_tokens == plain.usage.completion_tokens


def test_repeated_prompt_reuses_the_cached_prefix_and_keeps_the_answer():
    # A prompt no other test sends, long enough that a shared template start is no match.
    convo = [{"role": "system", "content": "You answer questions about the weather on the "
              "islands of the North Sea, briefly and in plain words, for sailors."},
             {"role": "user", "content": "Will the wind on Heligoland be strong tomorrow?"}]
    kw = dict(model="chat", max_tokens=16, temperature=0)
    first = client().chat.completions.create(messages=convo, **kw)
    assert first.usage.prompt_tokens_details.cached_tokens == 0, first.usage
    again = client().chat.completions.create(messages=convo, **kw)
    # Everything but the last prompt token was still in the model's KV cache.
    assert again.usage.prompt_tokens == first.usage.prompt_tokens
    assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1
    assert again.choices[0].message.content == first.choices[0].message.content
    streamed = list(client().chat.completions.create(
        messages=convo, stream=True, stream_options={"include_usage": True}, **kw))
    usage = streamed[-1].usage
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens - 1, usage
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == first.choices[0].message.content
    # The next turn resends the conversation: its start is reused, the rest decoded.
    turn = convo + [{"role": "assistant", "content": first.choices[0].message.content},
                    {"role": "user", "content": "And on Sylt?"}]
    second = client().chat.completions.create(messages=turn, **kw)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert first.usage.prompt_tokens - 1 <= cached < second.usage.prompt_tokens, second.usage
    metrics = raw("GET", "/metrics", headers={}).text
    hits = [line for line in metrics.splitlines()
            if line.startswith('cyxwiz_node_prompt_cache_hits_total{model="chat"}')]
    assert hits and float(hits[0].split()[-1]) >= 3, hits
    assert 'cyxwiz_node_prompt_cached_tokens_total{model="chat"}' in metrics


def test_chat_n2_gives_two_choices():
    r = client().chat.completions.create(model="chat", messages=CHAT, max_tokens=12, n=2,
                                         temperature=0.9, seed=7)
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.message.content for c in r.choices)
    assert 2 <= r.usage.completion_tokens <= 24


def test_chat_seed_is_reproducible():
    kw = dict(model="chat", messages=CHAT, max_tokens=16, temperature=1.0, seed=42)
    a = client().chat.completions.create(**kw).choices[0].message.content
    b = client().chat.completions.create(**kw).choices[0].message.content
    assert a == b


def test_completions_plain_stream_and_stop():
    c = client()
    r = c.completions.create(model="chat", prompt="The capital of France is", max_tokens=12,
                             temperature=0)
    assert r.object == "text_completion" and r.choices[0].text
    text = "".join(ch.choices[0].text for ch in c.completions.create(
        model="chat", prompt="The capital of France is", max_tokens=12, temperature=0,
        stream=True) if ch.choices)
    assert text == r.choices[0].text
    counted = c.completions.create(model="chat", prompt="1, 2, 3, 4, 5,", max_tokens=30,
                                   temperature=0, stop=["8"])
    out = counted.choices[0].text
    assert "8" not in out and counted.choices[0].finish_reason == "stop", out
    two = c.completions.create(model="chat", prompt=["Hello", "Goodbye"], max_tokens=4,
                               temperature=0)
    assert [ch.index for ch in two.choices] == [0, 1]


def test_embeddings_float_and_base64_agree_and_match_fp32_reference():
    from minilm_reference import MiniLM
    texts = ["A cat sits on the mat.", "Quantum chromodynamics describes quarks.",
             "cyxwiz nodes serve models"]
    c = client()
    b64 = c.embeddings.create(model="embed", input=texts)  # the SDK asks for base64
    flt = c.embeddings.create(model="embed", input=texts, encoding_format="float")
    assert [d.index for d in flt.data] == [0, 1, 2]
    a = np.array([d.embedding for d in b64.data])
    b = np.array([d.embedding for d in flt.data])
    assert a.shape == (3, 384)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert flt.usage.prompt_tokens > 10
    ref = MiniLM(MODELS / "minilm-fp32", MODELS / "minilm" / "tokenizer.json")
    for text, got in zip(texts, b):
        want = ref.embed_one(text)
        cos = float(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
        assert cos >= 0.999, (text, cos)
    # A batch gives the same vectors as one-by-one requests (padding is masked out).
    single = np.array(c.embeddings.create(model="embed", input=texts[1],
                                          encoding_format="float").data[0].embedding)
    np.testing.assert_allclose(single, b[1], atol=1e-4)


def test_embeddings_raw_base64_and_token_input():
    r = raw("POST", "/v1/embeddings", json={"model": "embed", "input": [[101, 7592, 102]],
                                             "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    vec = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    assert vec.shape == (384,) and abs(np.linalg.norm(vec) - 1) < 1e-4
    assert r.json()["usage"]["prompt_tokens"] == 3


def test_bad_key_is_authentication_error():
    with pytest.raises(openai.AuthenticationError) as e:
        client("cyx-not-a-key").models.list()
    assert e.value.status_code == 401
    r = raw("GET", "/v1/models", headers={})
    assert r.status_code == 401 and "API key" in r.json()["error"]["message"]


def test_unknown_model_is_not_found():
    with pytest.raises(openai.NotFoundError) as e:
        client().chat.completions.create(model="nope", messages=CHAT)
    assert e.value.body["code"] == "model_not_found"


def test_a_key_restricted_to_a_model_sees_others_as_unknown():
    restricted = client(os.environ["CYXWIZ_EMBED_ONLY_KEY"])
    with pytest.raises(openai.NotFoundError) as allowed_elsewhere:
        restricted.chat.completions.create(model="chat", messages=CHAT, max_tokens=2)
    with pytest.raises(openai.NotFoundError) as unknown:
        restricted.chat.completions.create(model="no-such-model", messages=CHAT, max_tokens=2)
    # The answers are the same but for the name: the key learns nothing about `chat`.
    assert allowed_elsewhere.value.body["code"] == unknown.value.body["code"] == "model_not_found"
    assert allowed_elsewhere.value.body["message"].replace("chat", "X") == \
        unknown.value.body["message"].replace("no-such-model", "X")
    assert {m.id for m in restricted.models.list()} == {"embed"}
    restricted.embeddings.create(model="embed", input="fine")


def test_rate_limit_headers_and_429():
    limited = client(os.environ["CYXWIZ_LIMITED_KEY"])
    first = limited.models.with_raw_response.list()
    assert first.headers["x-ratelimit-limit-requests"] == "3"
    assert first.headers["x-ratelimit-remaining-requests"] == "2"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    limited.models.list()
    limited.models.list()
    with pytest.raises(openai.RateLimitError) as e:
        limited.models.list()
    assert int(e.value.response.headers["retry-after"]) >= 1
    assert e.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_invalid_messages_are_bad_requests():
    c = client()
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="chat", messages=[])
    assert e.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="chat", messages=[{"role": "robot", "content": "x"}])
    assert "robot" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="chat", messages=CHAT, tools=[{"type": "function",
                                  "function": {"name": "f", "parameters": {}}}])
    assert e.value.body["param"] == "tools"
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="chat", messages=CHAT, temperature=5)
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="chat", messages=CHAT, max_tokens=10**6)
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="embed", messages=CHAT)


def test_raw_http_errors_have_openai_shape():
    r = raw("POST", "/v1/chat/completions", content=b"{not json",
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = raw("POST", "/v1/embeddings", json={"model": "embed", "input": "x" * (9 << 20)})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]["message"]
    r = raw("GET", "/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


def test_predict_runs_a_tensor_model():
    data = [0.5] * (3 * 48 * 192)
    r = raw("POST", "/v1/predict", json={"model": "classifier", "inputs": {
        "x": {"dtype": "float32", "shape": [1, 3, 48, 192], "data": data}}})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    (tensor,) = out.values() if isinstance(out, dict) else out
    assert tensor["shape"] == [1, 2]
    r = raw("POST", "/v1/predict", json={"model": "classifier", "inputs": {"y": [1.0]}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "inputs"


def test_concurrent_predictions_equal_sequential_ones():
    # Concurrent requests may be batched together by the node; answers must not change.
    import threading

    def ask(value):
        r = raw("POST", "/v1/predict", json={"model": "classifier", "inputs": {
            "x": {"dtype": "float32", "shape": [1, 3, 48, 192],
                  "data": [value] * (3 * 48 * 192)}}})
        assert r.status_code == 200, r.text
        (tensor,) = r.json()["outputs"].values()
        return np.array(tensor["data"], dtype=np.float32)

    values = [i / 10 for i in range(12)]
    sequential = [ask(v) for v in values]
    concurrent = [None] * len(values)

    def worker(i):
        concurrent[i] = ask(values[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(values))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(sequential, concurrent):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert len({tuple(np.round(a, 4)) for a in sequential}) > 1, "inputs give different outputs"


def test_metrics_count_requests_and_tokens():
    text = raw("GET", "/metrics", headers={}).text
    assert 'cyxwiz_node_http_requests_total{route="/v1/chat/completions",status="200"}' in text
    assert 'cyxwiz_node_generated_tokens_total{model="chat"}' in text
    assert "cyxwiz_node_models_loaded 3" in text

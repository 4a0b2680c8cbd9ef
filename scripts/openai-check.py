#!/usr/bin/env python3
"""Drives a running queen-rbee with the official `openai` SDK, as editors and chat UIs do.

    openai-check.py --base-url http://127.0.0.1:8080/v1 --model <model id> [--api-key KEY]

Checks a streaming chat completion (with usage), a non-streaming one, one with the
default-valued fields SDKs send, a chat template with the request, penalties and a logit bias, seeded sampling,
log-probabilities (chat streamed and not, and a completion), structured output (a pydantic
model through `beta.chat.completions.parse`, JSON mode, a schema that cannot be enforced),
a tool-call round trip (a required call, streamed and not, a named function, the tool's
result, the final answer),
a completion (also with its
prompt as a list), models.list() and models.retrieve(), the errors for an
unknown model and for a value rbee cannot honour, asserting on what comes back. Exits 0 and
prints "openai SDK check passed" when everything holds.
"""

import argparse
import json
import re
import sys
from typing import Literal, Optional

import openai
import pydantic


def words(text):
    return re.findall(r"[A-Za-z']+", text)


def coherent(text, what):
    found = words(text)
    common = {"the", "a", "and", "of", "to", "in", "is", "it", "you", "i", "was", "sea"}
    assert len(found) >= 5, f"{what}: too few words in {text!r}"
    assert any(w.lower() in common for w in found), f"{what}: not English: {text!r}"
    assert "\ufffd" not in text, f"{what}: broken UTF-8 in {text!r}"


class Pet(pydantic.BaseModel):
    kind: Literal["cat", "dog", "fish"]
    name: str


class Person(pydantic.BaseModel):
    name: str
    age: int
    height_m: float
    married: bool
    nickname: Optional[str]
    pets: list[Pet]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--api-key", default="none")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0)
    messages = [{"role": "user", "content": "Write a short story about a cat."}]

    # Streaming chat completion, with usage in the last chunk.
    stream = client.chat.completions.create(
        model=args.model,
        messages=messages,
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    streamed = "".join(pieces)
    coherent(streamed, "streaming chat")
    assert finish == "length", f"24 tokens of a story end by length, got {finish}"
    assert usage is not None, "no usage chunk despite include_usage"
    assert usage.completion_tokens == 24, usage
    assert len(pieces) == usage.completion_tokens, (len(pieces), usage)
    assert usage.prompt_tokens > 5 and usage.total_tokens == usage.prompt_tokens + 24, usage

    # The same request without streaming: greedy, so the same text.
    whole = client.chat.completions.create(
        model=args.model, messages=messages, max_tokens=24, temperature=0
    )
    text = whole.choices[0].message.content
    assert whole.choices[0].message.role == "assistant"
    assert text == streamed, f"{text!r} != {streamed!r}"
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 24 and whole.usage.prompt_tokens == usage.prompt_tokens

    # The default-valued fields SDKs, agents and chat UIs send change nothing.
    defaults = client.chat.completions.create(
        model=args.model, messages=messages, max_tokens=24, temperature=0,
        logprobs=False, top_logprobs=0, response_format={"type": "text"}, tools=[],
        tool_choice="none", parallel_tool_calls=False, logit_bias={}, store=False,
        metadata={"app": "openai-check"}, service_tier="auto", modalities=["text"],
    )
    assert defaults.choices[0].message.content == streamed, defaults.choices[0].message.content

    # A chat template with the request (rbee's extension, vLLM's name) replaces the model's:
    # one that writes the messages as they are makes the prompt their bare text.
    verbatim = client.chat.completions.create(
        model=args.model, messages=messages, max_tokens=1, temperature=0,
        extra_body={"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"},
    )
    bare = client.completions.create(
        model=args.model, prompt="".join(m["content"] for m in messages), max_tokens=1,
        temperature=0,
    )
    assert verbatim.usage.prompt_tokens == bare.usage.prompt_tokens, (verbatim.usage, bare.usage)
    assert verbatim.usage.prompt_tokens < usage.prompt_tokens, (verbatim.usage, usage)

    # Penalties and a logit bias reach the sampler: same request, another greedy answer.
    penalised = client.chat.completions.create(
        model=args.model, messages=messages, max_tokens=24, temperature=0,
        frequency_penalty=1.5, presence_penalty=1.0, logit_bias={"0": -100},
    ).choices[0].message.content
    coherent(penalised, "penalised chat")
    assert penalised != streamed, penalised

    # A seed makes sampling reproducible; another seed samples another answer.
    def sampled(seed):
        return client.chat.completions.create(
            model=args.model, messages=messages, max_tokens=24, temperature=1.0, seed=seed
        ).choices[0].message.content
    first = sampled(7)
    assert sampled(7) == first, "the same seed gave another answer"
    assert sampled(8) != first, "another seed gave the same answer"

    # Log-probabilities: one entry per generated token, the greedy token the most likely of
    # its alternatives, the same in a stream, and the tokens spelling the answer.
    chosen = client.chat.completions.create(
        model=args.model, messages=messages, max_tokens=24, temperature=0,
        logprobs=True, top_logprobs=3,
    )
    content = chosen.choices[0].logprobs.content
    assert chosen.choices[0].message.content == streamed
    assert len(content) == 24, len(content)
    for entry in content:
        assert entry.logprob <= 0, entry
        assert len(entry.top_logprobs) == 3, entry
        best = entry.top_logprobs[0]
        assert best.token == entry.token and abs(best.logprob - entry.logprob) < 1e-6, entry
        assert [t.logprob for t in entry.top_logprobs] == sorted(
            (t.logprob for t in entry.top_logprobs), reverse=True), entry
    spelled = b"".join(bytes(entry.bytes) for entry in content).decode()
    assert spelled == streamed, (spelled, streamed)
    streamed_lp = []
    for chunk in client.chat.completions.create(
        model=args.model, messages=messages, max_tokens=24, temperature=0,
        logprobs=True, top_logprobs=3, stream=True,
    ):
        for choice in chunk.choices:
            if choice.logprobs and choice.logprobs.content:
                streamed_lp.extend(choice.logprobs.content)
    assert [e.token for e in streamed_lp] == [e.token for e in content]
    assert all(abs(a.logprob - b.logprob) < 1e-4 for a, b in zip(streamed_lp, content))
    scored = client.completions.create(
        model=args.model, prompt="The capital of France is", max_tokens=4, temperature=0,
        logprobs=2,
    ).choices[0]
    lp = scored.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4, lp
    assert "".join(lp.tokens) == scored.text, (lp.tokens, scored.text)
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset), lp
    assert all(1 <= len(top) <= 2 and max(top.values()) <= 0 for top in lp.top_logprobs), lp
    try:
        client.chat.completions.create(
            model=args.model, messages=messages, logprobs=True, top_logprobs=21)
        raise AssertionError("21 alternatives were accepted")
    except openai.BadRequestError as e:
        assert e.body.get("param") == "top_logprobs", e.body

    # Structured output: the SDK's pydantic parsing of a strict JSON schema, whatever is asked.
    for prompt in ["Describe a person who owns pets.", "Write a poem about the sea."]:
        parsed = client.beta.chat.completions.parse(
            model=args.model, messages=[{"role": "user", "content": prompt}],
            response_format=Person, max_tokens=200, temperature=0,
        ).choices[0]
        assert parsed.finish_reason == "stop", parsed
        person = parsed.message.parsed
        assert isinstance(person, Person) and all(isinstance(p, Pet) for p in person.pets), parsed
    json_mode = client.chat.completions.create(
        model=args.model, messages=[{"role": "user", "content": "List three colours as JSON."}],
        response_format={"type": "json_object"}, max_tokens=120, temperature=0,
    ).choices[0].message.content
    assert isinstance(json.loads(json_mode), dict), json_mode
    try:
        client.chat.completions.create(
            model=args.model, messages=messages, max_tokens=8,
            response_format={"type": "json_schema", "json_schema": {
                "name": "bad", "schema": {"type": "object", "required": ["a"],
                                          "properties": {}, "additionalProperties": False}}},
        )
        raise AssertionError("an unsatisfiable schema was accepted")
    except openai.BadRequestError as e:
        assert e.body.get("param") == "response_format", e.body

    # Tool calls: a required call with arguments that follow the function's schema, streamed
    # the same; a named function; then the tool's result and the final answer.
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                       "required": ["city"], "additionalProperties": False}}},
        {"type": "function", "function": {
            "name": "get_time", "description": "The time in a time zone",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 30}},
                           "required": ["zone"], "additionalProperties": False}}}]
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.chat.completions.create(
        model=args.model, messages=question, tools=tools, tool_choice="required",
        max_tokens=64, temperature=0,
    ).choices[0]
    assert called.finish_reason == "tool_calls", called
    call = called.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_"), call
    assert call.function.name in ("get_weather", "get_time"), call
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == ({"city"} if call.function.name == "get_weather" else {"zone"}), arguments
    streamed_calls, stream_finish = [], None
    for chunk in client.chat.completions.create(
        model=args.model, messages=question, tools=tools, tool_choice="required",
        max_tokens=64, temperature=0, stream=True,
    ):
        for choice in chunk.choices:
            streamed_calls.extend(choice.delta.tool_calls or [])
            stream_finish = choice.finish_reason or stream_finish
    assert stream_finish == "tool_calls", stream_finish
    assert [(c.function.name, c.function.arguments) for c in streamed_calls] == [
        (call.function.name, call.function.arguments)], streamed_calls
    named = client.chat.completions.create(
        model=args.model, messages=question, tools=tools, max_tokens=64, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    ).choices[0].message.tool_calls
    assert [c.function.name for c in named] == ["get_time"], named
    history = question + [called.message.model_dump(exclude_none=True), {
        "role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"}]
    final = client.chat.completions.create(
        model=args.model, messages=history, tools=tools, tool_choice="none",
        max_tokens=48, temperature=0,
    ).choices[0]
    assert final.message.tool_calls is None and final.message.content, final
    coherent(final.message.content, "answer after a tool result")

    # A plain completion that stops on its own stop sequence.
    completion = client.completions.create(
        model=args.model, prompt="The capital of France is", max_tokens=8, temperature=0, stop=["."]
    )
    assert "Paris" in completion.choices[0].text, completion.choices[0].text
    assert completion.choices[0].finish_reason == "stop", completion.choices[0]
    listed = client.completions.create(
        model=args.model, prompt=["The capital of France is"], max_tokens=8, temperature=0, stop=["."]
    )
    assert listed.choices[0].text == completion.choices[0].text, listed.choices[0].text

    # The model is listed, with and without a node.
    ids = [m.id for m in client.models.list()]
    assert args.model in ids, ids
    assert any(i.endswith("/" + args.model) for i in ids), ids
    assert client.models.retrieve(args.model).id == args.model
    try:
        client.models.retrieve("gpt-4o")
        raise AssertionError("an unknown model was found")
    except openai.NotFoundError as e:
        assert "gpt-4o" in str(e), e

    # An unknown model is a 404 the SDK raises.
    try:
        client.chat.completions.create(model="gpt-4o", messages=messages)
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        assert "gpt-4o" in str(e), e

    # A field rbee does not honour is refused, not ignored.
    try:
        client.chat.completions.create(model=args.model, messages=messages, store=True)
        raise AssertionError("store was accepted")
    except openai.BadRequestError as e:
        assert "store" in str(e), e
        assert e.body.get("param") == "store", e.body

    print("openai SDK check passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"openai SDK check failed: {e}", file=sys.stderr)
        sys.exit(1)

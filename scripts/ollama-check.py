#!/usr/bin/env python3
"""Drives a running queen-rbee with the official `ollama` Python package, as chat UIs, editor
plugins and home-automation tools that speak Ollama do.

    ollama-check.py --host http://127.0.0.1:8080 --model <model name> [--api-key KEY]

<model name> must not be in any catalog yet (a Hugging Face reference the queen's nodes can
download): the check pulls it with progress, lists it, shows it, chats (streamed and not, with
`format` as "json" and as a schema, with a tool), generates, finds it running, deletes it and
asks for a model that does not exist, asserting on what comes back. Exits 0 and prints "ollama
package check passed" when everything holds.
"""

import argparse
import json
import re
import urllib.request
from typing import Literal

import ollama
import pydantic


class Pet(pydantic.BaseModel):
    kind: Literal["cat", "dog", "fish"]
    name: str


class Person(pydantic.BaseModel):
    name: str
    age: int
    pets: list[Pet]


def words(text):
    return re.findall(r"[A-Za-z']+", text)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--api-key")
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else None
    client = ollama.Client(host=args.host, headers=headers)
    model = args.model

    with urllib.request.urlopen(f"{args.host}/api/version") as r:
        assert json.load(r)["version"], "no version"

    # Pull with progress: downloading lines with byte counts, then success.
    statuses, completed, total = [], 0, 0
    for progress in client.pull(model, stream=True):
        statuses.append(progress.status)
        if progress.total:
            total, completed = progress.total, max(completed, progress.completed or 0)
    assert statuses[-1] == "success", statuses
    assert total > 0 and completed == total, (completed, total, statuses)
    assert client.pull(model).status == "success", "a second pull finds it"

    names = [m.model for m in client.list().models]
    assert model in names, names
    listed = next(m for m in client.list().models if m.model == model)
    assert listed.size > 1_000_000 and listed.details.format == "gguf", listed

    shown = client.show(model)
    assert shown.details.family == "llama", shown.details
    assert shown.details.parameter_size.endswith("M"), shown.details
    assert shown.modelinfo["general.architecture"] == "llama", shown.modelinfo
    assert "im_start" in (shown.template or ""), shown.template

    messages = [{"role": "user", "content": "Write a short story about a cat."}]
    options = {"temperature": 0, "num_predict": 24, "repeat_penalty": 1.0}
    pieces, last = [], None
    for chunk in client.chat(model=model, messages=messages, options=options, stream=True):
        pieces.append(chunk.message.content)
        last = chunk
    streamed = "".join(pieces)
    assert last.done and last.done_reason == "length", last
    assert last.eval_count == 24 and last.prompt_eval_count > 5, last
    assert last.total_duration > 0 and last.eval_duration > 0, last
    assert len(words(streamed)) >= 5 and "\ufffd" not in streamed, streamed
    # `num_ctx` bounds prompt plus answer.
    short = client.chat(model=model, messages=messages,
                        options={"temperature": 0, "num_ctx": last.prompt_eval_count + 4})
    assert short.eval_count == 4 and short.done_reason == "length", short
    whole = client.chat(model=model, messages=messages, options=options)
    assert whole.done and whole.message.role == "assistant", whole
    assert whole.message.content == streamed, (whole.message.content, streamed)

    templated = client.generate(model=model, prompt="Describe the sea.", system="Be brief.",
                                options={"temperature": 0, "num_predict": 12})
    assert len(words(templated.response)) >= 3 and templated.done_reason == "length", templated
    raw = client.generate(model=model, prompt="The capital of France is", raw=True,
                          options={"temperature": 0, "num_predict": 8, "stop": ["."]})
    assert "Paris" in raw.response and raw.done_reason == "stop", raw
    # The chat template (and its system message) surrounds the templated prompt only.
    assert templated.prompt_eval_count > raw.prompt_eval_count + 5, (templated, raw)
    streamed_raw = "".join(c.response for c in client.generate(
        model=model, prompt="The capital of France is", raw=True, stream=True,
        options={"temperature": 0, "num_predict": 8, "stop": ["."]}))
    assert streamed_raw == raw.response, (streamed_raw, raw.response)

    # `format`: a JSON schema from pydantic, and plain JSON.
    answer = client.chat(model=model, format=Person.model_json_schema(),
                         messages=[{"role": "user", "content": "Describe a person who owns pets."}],
                         options={"temperature": 0, "num_predict": 200})
    person = Person.model_validate_json(answer.message.content)
    assert person.pets is not None, person
    as_json = client.generate(model=model, prompt="List three colours.", format="json",
                              options={"temperature": 0, "num_predict": 120})
    assert isinstance(json.loads(as_json.response), dict), as_json.response

    # A tool: the call comes back with its arguments as an object; the result, then an answer.
    def get_weather(city: str) -> str:
        """The current weather in a city.

        Args:
          city: the city's name
        """
        return "18 degrees and sunny"

    asked = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
    called = client.chat(model=model, messages=asked, tools=[get_weather],
                         options={"temperature": 0, "num_predict": 64})
    calls = called.message.tool_calls or []
    if calls:
        call = calls[0]
        assert call.function.name == "get_weather", call
        assert isinstance(call.function.arguments.get("city"), str), call
        follow = asked + [called.message.model_dump(exclude_none=True),
                          {"role": "tool", "tool_name": "get_weather",
                           "content": get_weather(**call.function.arguments)}]
        final = client.chat(model=model, messages=follow,
                            options={"temperature": 0, "num_predict": 48})
        assert final.message.content.strip(), final
    else:
        assert called.message.content.strip(), called

    running = [m.model for m in client.ps().models]
    assert any(name.endswith(model) for name in running), running

    try:
        client.chat(model="llama3:8b", messages=messages)
        raise AssertionError("an unknown model answered")
    except ollama.ResponseError as e:
        assert e.status_code == 404 and "llama3:8b" in e.error, e

    # Deleting a model a worker runs is refused until the worker stops (keep_alive 0 stops
    # it once its answer is done), then it leaves the list.
    client.generate(model=model, prompt="Hi", keep_alive=0, options={"num_predict": 2})
    assert not any(m.model.endswith(model) for m in client.ps().models), client.ps()
    assert client.delete(model).status == "success"
    assert model not in [m.model for m in client.list().models]
    try:
        client.show(model)
        raise AssertionError("a deleted model was shown")
    except ollama.ResponseError as e:
        assert e.status_code == 404, e

    print("ollama package check passed")


if __name__ == "__main__":
    main()

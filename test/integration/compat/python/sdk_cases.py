"""The official `openai` and `anthropic` Python SDKs against the gateway's /v1.

Run by test/integration/compat/python-sdk.test.ts as one long-lived process (so the SDKs are
imported once, not per case): FF_BASE (the gateway's root URL) in the environment, then one JSON
command a line on stdin, `{"sdk", "case", "key", "over", "maxRetries"}`, and one JSON line back
per command: the case's observations (texts, usage, tool calls, parsed objects, the exception
class the SDK raised, the statuses its attempts got and how long it took), or `{"crash": ...}`.
The Jest side scripts the fake upstreams before each command and checks the answer. The SDK-side
facts (which class was raised, what the SDK parsed) are asserted here too.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import anthropic
import openai
from pydantic import BaseModel

BASE = os.environ["FF_BASE"]
# Set per command by main().
KEY = ""
MAX_RETRIES = 0

Result = dict[str, Any]

# Every attempt's HTTP status, in order (the SDK's own retries included).
statuses: list[int] = []


def _record(response: Any) -> None:
    statuses.append(response.status_code)


def oa_client() -> openai.OpenAI:
    return openai.OpenAI(
        api_key=KEY,
        base_url=f"{BASE}/v1",
        max_retries=MAX_RETRIES,
        http_client=openai.DefaultHttpxClient(event_hooks={"response": [_record]}),
    )


def an_client() -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=KEY,
        base_url=BASE,
        max_retries=MAX_RETRIES,
        http_client=anthropic.DefaultHttpxClient(event_hooks={"response": [_record]}),
    )


WEATHER_OA: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
WEATHER_AN: list[Any] = [
    {
        "name": "get_weather",
        "description": "Weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


class Person(BaseModel):
    name: str
    age: int


# ---- openai ----------------------------------------------------------------------------------


def oa_text(over: dict[str, Any]) -> Result:
    r = oa_client().chat.completions.create(
        **{
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "Say hello"},
            ],
            "temperature": 0.2,
            "seed": 7,
            "max_tokens": 50,
            **over,
        }
    )
    assert r.object == "chat.completion"
    assert r.usage is not None
    return {
        "content": r.choices[0].message.content,
        "finish": r.choices[0].finish_reason,
        "usage": r.usage.model_dump(),
    }


def oa_stream(over: dict[str, Any]) -> Result:
    stream = oa_client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Stream it"}],
        stream=True,
        stream_options={"include_usage": True},
        **over,
    )
    text, finish, usage, deltas = "", None, None, 0
    for chunk in stream:
        if chunk.choices:
            if chunk.choices[0].delta.content:
                deltas += 1
                text += chunk.choices[0].delta.content
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage.model_dump()
    return {"text": text, "finish": finish, "usage": usage, "deltas": deltas}


def oa_tools(over: dict[str, Any]) -> Result:
    client = oa_client()
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Oslo?"}]
    # The SDK's streaming helper accumulates the streamed tool-call deltas.
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=messages, tools=WEATHER_OA, tool_choice="auto", parallel_tool_calls=True
    ) as s:
        first = s.get_final_completion()
    msg = first.choices[0].message
    calls = [[c.id, c.function.name, json.loads(c.function.arguments)] for c in msg.tool_calls or []]  # type: ignore[union-attr]
    results = {"Paris": "20C", "Oslo": "5C"}
    second = client.chat.completions.create(
        model="gpt-4o-mini",
        tools=WEATHER_OA,
        messages=[
            *messages,
            msg.model_dump(exclude_none=True),
            *({"role": "tool", "tool_call_id": c[0], "content": results[c[2]["city"]]} for c in calls),
        ],
    )
    return {
        "finish1": first.choices[0].finish_reason,
        "calls": calls,
        "answer": second.choices[0].message.content,
        "finish2": second.choices[0].finish_reason,
    }


def oa_json(over: dict[str, Any]) -> Result:
    # The SDK turns the pydantic model into a strict json_schema response_format and parses the answer.
    r = oa_client().chat.completions.parse(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Who?"}], response_format=Person
    )
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, Person)
    return {"parsed": parsed.model_dump()}


# ---- anthropic -------------------------------------------------------------------------------


def an_text(over: dict[str, Any]) -> Result:
    m = an_client().messages.create(
        **{
            "model": "claude-haiku",
            "max_tokens": 50,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Say hello"}],
            **over,
        }
    )
    assert m.type == "message"
    return {
        "content": "".join(b.text for b in m.content if b.type == "text"),
        "finish": m.stop_reason,
        "usage": m.usage.model_dump(),
    }


def an_stream(over: dict[str, Any]) -> Result:
    events: list[str] = []
    with an_client().messages.stream(
        model="claude-haiku", max_tokens=50, messages=[{"role": "user", "content": "Stream it"}], **over
    ) as s:
        text = ""
        for ev in s:
            events.append(ev.type)
            if ev.type == "text":
                text += ev.text
        final = s.get_final_message()
    return {
        "text": text,
        "final": "".join(b.text for b in final.content if b.type == "text"),
        "finish": final.stop_reason,
        "usage": final.usage.model_dump(),
        "events": events,
    }


def an_tools(over: dict[str, Any]) -> Result:
    client = an_client()
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Oslo?"}]
    with client.messages.stream(model="claude-haiku", max_tokens=200, messages=messages, tools=WEATHER_AN) as s:
        first = s.get_final_message()
    uses = [b for b in first.content if b.type == "tool_use"]
    results = {"Paris": "20C", "Oslo": "5C"}
    second = client.messages.create(
        model="claude-haiku",
        max_tokens=200,
        tools=WEATHER_AN,
        messages=[
            *messages,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": b.id, "content": results[b.input["city"]]}  # type: ignore[index]
                    for b in uses
                ],
            },
        ],
    )
    return {
        "finish1": first.stop_reason,
        "calls": [[b.id, b.name, b.input] for b in uses],
        "answer": "".join(b.text for b in second.content if b.type == "text"),
        "finish2": second.stop_reason,
    }


def an_json(over: dict[str, Any]) -> Result:
    # Structured output the Anthropic way: a forced tool whose input is the object.
    m = an_client().messages.create(
        model="claude-haiku",
        max_tokens=200,
        messages=[{"role": "user", "content": "Who?"}],
        tools=[{"name": "person", "input_schema": Person.model_json_schema()}],
        tool_choice={"type": "tool", "name": "person"},
    )
    use = next(b for b in m.content if b.type == "tool_use")
    return {"parsed": Person.model_validate(use.input).model_dump(), "finish": m.stop_reason}


# ---- errors (both) ---------------------------------------------------------------------------


def call_error(sdk: str, over: dict[str, Any]) -> Result:
    """One call with `over` merged in; reports the exception class the SDK raised (or the answer)."""
    started = time.monotonic()
    try:
        if sdk == "openai":
            r = oa_client().chat.completions.create(
                **{"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}], **over}
            )
            out: Result = {"ok": True, "content": r.choices[0].message.content}
        else:
            m = an_client().messages.create(
                **{"model": "claude-haiku", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}], **over}
            )
            out = {"ok": True, "content": "".join(b.text for b in m.content if b.type == "text")}
    except (openai.APIStatusError, anthropic.APIStatusError) as e:
        body = e.body if isinstance(e.body, dict) else {}
        # openai's body is the `error` object; anthropic's is the whole envelope.
        err = body.get("error", body) if sdk == "anthropic" else body
        out = {
            "ok": False,
            "class": type(e).__name__,
            "status": e.status_code,
            "type": err.get("type") if isinstance(err, dict) else None,
            "code": getattr(e, "code", None),
            "param": getattr(e, "param", None),
            "retryAfter": e.response.headers.get("retry-after"),
        }
    out["elapsedMs"] = round((time.monotonic() - started) * 1000)
    return out


CASES: dict[str, dict[str, Callable[[dict[str, Any]], Result]]] = {
    "openai": {"text": oa_text, "stream": oa_stream, "tools": oa_tools, "json": oa_json},
    "anthropic": {"text": an_text, "stream": an_stream, "tools": an_tools, "json": an_json},
}


def main() -> None:
    global KEY, MAX_RETRIES
    for line in sys.stdin:
        cmd = json.loads(line)
        sdk, case, over = cmd["sdk"], cmd["case"], cmd.get("over") or {}
        KEY, MAX_RETRIES = cmd["key"], int(cmd.get("maxRetries") or 0)
        statuses.clear()
        try:
            result = call_error(sdk, over) if case == "error" else CASES[sdk][case](over)
            result["statuses"] = list(statuses)
            result["sdkVersion"] = openai.__version__ if sdk == "openai" else anthropic.__version__
        except Exception as e:  # reported to the test, which fails on it
            result = {"crash": f"{type(e).__name__}: {e}"}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

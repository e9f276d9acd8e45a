"""`bench.profiles`: a py-spy profile's own samples by part of the stack, module and function."""

from __future__ import annotations

import pytest

from bench.profiles import ROOT, location_of, part_of, summarize

SITE = "/x/.venv/lib/python3.11/site-packages"


def test_profile_summary_counts_own_samples_by_module_and_part() -> None:
    lines = [
        f"run (<frozen runpy>:1);write ({ROOT}/gateway/transport.py:318) 30",
        f"run (<frozen runpy>:1);events ({SITE}/wsproto/frame_protocol.py:5) 20",
        f"run (<frozen runpy>:1);handle ({SITE}/hypercorn/protocol/ws_stream.py:9) 10",
        f"run (<frozen runpy>:1);parse_frame ({ROOT}/gateway/ocppj/codec.py:100) 40",
        "not a stack line",
    ]
    total, parts, modules, functions = summarize(lines)
    assert total == 100
    assert modules["gateway/transport.py"] == 30 and modules["wsproto/frame_protocol.py"] == 20
    assert parts == {
        "the gateway's transport": 30,
        "wsproto": 20,
        "Hypercorn and h11": 10,
        "the gateway's OCPP work": 40,
    }
    assert functions["parse_frame (gateway/ocppj/codec.py)"] == 40


def test_frames_are_named_from_this_checkout_the_stdlib_and_site_packages() -> None:
    assert location_of(f"f ({ROOT}/gateway/pings.py:1)") == ("f", "gateway/pings.py")
    assert location_of("g (/usr/lib/python3.11/asyncio/runners.py:118)") == (
        "g",
        "asyncio/runners.py",
    )
    assert location_of(f"h ({SITE}/hypercorn/asyncio/tcp_server.py:3)")[1] == (
        "hypercorn/asyncio/tcp_server.py"
    )
    assert location_of('process 7:"python -m gateway serve"')[1] == "(native code, no Python frame)"


@pytest.mark.parametrize(
    ("module", "part"),
    [
        ("hypercorn/asyncio/task_group.py", "Hypercorn and h11"),
        ("asyncio/runners.py", "the event loop (uvloop, asyncio)"),
        ("uvloop/__init__.py", "the event loop (uvloop, asyncio)"),
        ("ssl.py", "TLS (ssl.py)"),
        ("gateway/app_inbox.py", "the gateway's transport"),
        ("gateway/session.py", "the gateway's OCPP work"),
    ],
)
def test_profile_parts_are_told_by_the_start_of_the_module_path(module: str, part: str) -> None:
    assert part_of(module) == part

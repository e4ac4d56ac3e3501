"""py-spy's collapsed stacks read into where the CPU goes: own and inclusive shares per function,
process pseudo-frames and line numbers left out, recursion counted once, tables and names."""

from __future__ import annotations

from bench.gateway_flame import (
    Frame,
    ProfiledRun,
    inclusive_table,
    own_table,
    package_table,
    parse_collapsed,
    parse_frame,
    section,
    svg_name,
)
from bench.gateway_report import read_markdown

PROCESS = 'process 4242:"python -m sage_gateway --host 127.0.0.1; --port 8000"'
RUN = "run (uvicorn/server.py)"
HANDLE = "handle (sage_gateway/dispatch.py)"
PROXY = "proxy (sage_gateway/proxy.py)"
SEND = "send (sage_gateway/upstream/client.py)"
PARSE = "feed_data (httptools/parser.py)"

RAW = f"""{PROCESS};{RUN};{HANDLE};{PROXY};{SEND} 50
{PROCESS};{RUN};{HANDLE};{PARSE} 30
{PROCESS};{RUN} 15
{PROCESS} 5
"""


def frame(text: str) -> Frame:
    parsed = parse_frame(text)
    assert parsed is not None
    return parsed


def test_a_frame_is_a_function_and_its_file_without_the_line() -> None:
    assert parse_frame("send (sage_gateway/upstream/client.py:88)") == Frame("send", "sage_gateway/upstream/client.py")
    assert parse_frame("send (sage_gateway/upstream/client.py)") == Frame("send", "sage_gateway/upstream/client.py")
    assert parse_frame("<module> (<frozen importlib._bootstrap>)") == Frame("<module>", "<frozen importlib._bootstrap>")
    assert parse_frame('process 1:"python x.py"') is None
    assert parse_frame("thread (0x7f00aa)") is None


def test_a_package_is_the_files_first_part() -> None:
    assert Frame("send", "sage_gateway/upstream/client.py").package == "sage_gateway"
    assert Frame("main", "mock_engine.py").package == "mock_engine"
    assert Frame("<module>", "<frozen site>").package == "<frozen site>"


def test_own_time_is_the_innermost_frame_and_inclusive_time_the_whole_stack() -> None:
    profile = parse_collapsed(RAW)
    assert profile.samples == 100  # the process frame alone is a sample too, of no function
    assert profile.own[frame(SEND)] == 50
    assert profile.own[frame(PARSE)] == 30
    assert profile.own[frame(RUN)] == 15
    assert profile.own[frame(HANDLE)] == 0
    assert profile.inclusive[frame(HANDLE)] == 80
    assert profile.inclusive[frame(RUN)] == 95
    assert profile.packages == {"sage_gateway": 50, "httptools": 30, "uvicorn": 15}


def test_the_process_command_line_may_hold_the_frame_separator() -> None:
    profile = parse_collapsed(f"{PROCESS};{HANDLE} 7\n")
    assert set(profile.inclusive) == {frame(HANDLE)}


def test_a_recursive_function_counts_once_per_sample_inclusive() -> None:
    profile = parse_collapsed(f"{RUN};{HANDLE};{HANDLE};{PROXY} 10\n{RUN} 10\n")
    assert profile.inclusive[frame(HANDLE)] == 10
    assert profile.share(profile.inclusive[frame(HANDLE)]) == 0.5


def test_lines_that_are_not_a_stack_and_a_count_are_skipped() -> None:
    profile = parse_collapsed(f"py-spy> Sampling process\n\n{RUN} 3\n{RUN} many\n")
    assert profile.samples == 3


def test_the_own_table_ranks_by_own_time_with_the_inclusive_share_beside_it() -> None:
    table = own_table(parse_collapsed(RAW), top=2)
    assert table.splitlines()[0] == "| function (file) | own | inclusive |"
    assert read_markdown(table) == {
        "`send` (sage_gateway/upstream/client.py)": ["50.0 %", "50.0 %"],
        "`feed_data` (httptools/parser.py)": ["30.0 %", "30.0 %"],
    }


def test_the_inclusive_table_leaves_out_what_is_on_nearly_every_stack() -> None:
    by_row = read_markdown(inclusive_table(parse_collapsed(RAW), top=3))
    handle, send, feed = (
        "`handle` (sage_gateway/dispatch.py)",
        "`send` (sage_gateway/upstream/client.py)",
        "`feed_data` (httptools/parser.py)",
    )
    assert list(by_row) == [handle, send, feed]  # run: 95 %; proxy: a wrapper of send
    assert by_row[handle] == ["0.0 %", "80.0 %"]


def test_a_wrapper_of_one_callee_without_own_time_is_left_out_of_the_inclusive_table() -> None:
    main, serve = "main (sage_gateway/__main__.py)", "serve (sage_gateway/__main__.py)"
    raw = f"{main};{serve};{RUN};{HANDLE} 40\n{main};{serve};{RUN};{PROXY} 20\n{HANDLE} 40\n"
    profile = parse_collapsed(raw)
    assert profile.callees[frame(serve)] == {frame(RUN)}
    assert profile.wrapper(frame(main))
    assert profile.wrapper(frame(serve))
    assert not profile.wrapper(frame(RUN))  # two callees
    assert [row.split(" ")[0] for row in read_markdown(inclusive_table(profile))] == ["`handle`", "`run`", "`proxy`"]


def test_the_package_table_sums_the_rest() -> None:
    by_row = read_markdown(package_table(parse_collapsed(RAW), top=1))
    assert by_row == {"`sage_gateway`": ["50.0 %"], "everything else": ["45.0 %"]}


def test_the_section_links_every_flame_graph() -> None:
    runs = [
        ProfiledRun("SAGE", "chat, 64 clients", "gateway-flame-chat.svg", parse_collapsed(RAW)),
        ProfiledRun("SAGE", "stream, 16 clients", "gateway-flame-stream.svg", parse_collapsed(RAW)),
    ]
    text = section(runs, "Sampled by py-spy. " * 10)
    assert text.startswith("## Where the CPU goes\n")
    assert max(len(line) for line in text.split("### ")[0].splitlines()) <= 100  # wrapped like the rest
    assert "### SAGE, chat, 64 clients" in text
    assert "[Flame graph](gateway-flame-chat.svg) (100 samples" in text
    assert "[Flame graph](gateway-flame-stream.svg)" in text


def test_flame_graphs_are_named_after_target_and_scenario() -> None:
    assert svg_name("SAGE", "chat, 64 clients") == "gateway-flame-chat.svg"
    assert svg_name("SAGE", "stream, 16 clients") == "gateway-flame-stream.svg"
    assert svg_name("SAGE keys+limits", "chat, 64 clients") == "gateway-flame-keys-limits-chat.svg"

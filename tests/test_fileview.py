"""FileView reads a file a window at a time and must answer exactly as its bytes would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pqueue.crashtest import SimulatedDisk
from pqueue.io.shell import FileView

contents = st.binary(max_size=200)
windows = st.integers(1, 40)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("index"), st.integers(-250, 250)),
        st.tuples(st.just("slice"), st.integers(-250, 250), st.integers(-250, 250)),
        st.tuples(st.just("find"), st.binary(min_size=1, max_size=3), st.integers(-5, 250)),
    ),
    max_size=30,
)


def view_of(data: bytes, window: int) -> FileView:
    disk = SimulatedDisk()
    disk.write("/f", data, 0)
    return FileView(disk, "/f", len(data), window)


def item(buf: bytes | FileView, i: int) -> int | None:
    try:
        return buf[i]
    except IndexError:
        return None


@given(contents, windows, ops)
def test_a_file_view_answers_as_the_bytes_do(
    data: bytes, window: int, script: list[tuple[object, ...]]
) -> None:
    view = view_of(data, window)
    assert len(view) == len(data)
    for op in script:
        if op[0] == "index":
            i = op[1]
            assert isinstance(i, int)
            assert item(view, i) == item(data, i)
        elif op[0] == "slice":
            a, b = op[1], op[2]
            assert isinstance(a, int) and isinstance(b, int)
            assert view[a:b] == data[a:b]
            assert view[a:] == data[a:]
        else:
            sub, start = op[1], op[2]
            assert isinstance(sub, bytes) and isinstance(start, int)
            assert view.find(sub, max(start, 0)) == data.find(sub, max(start, 0))

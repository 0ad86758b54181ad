"""The local stack's long-lived processes' full collections walk only what came since the last
(:func:`docpipe_local.long_lived.freeze_survivors`), and their cyclic garbage is still collected.

Each check runs in a Python process of its own: the collector's state is the whole process's."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    done = subprocess.run(  # docpipe_local is installed, as the `docpipe` fixture's runs rely on
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_full_collection_leaves_the_survivors_frozen_so_the_next_walks_only_what_came_since() -> None:
    out = _run(
        """
        import gc
        from docpipe_local.long_lived import freeze_survivors

        freeze_survivors()
        state = [{"item": i, "attrs": {"n": [i]}} for i in range(300_000)]  # the emulator's growing state
        gc.collect()  # a full collection: the state survives it
        frozen = gc.get_freeze_count()
        assert frozen >= 3 * 300_000, frozen
        assert gc.get_objects(2) == [], "survivors of a full collection are frozen"

        more = [{"item": [i]} for i in range(1_000)]  # what came since
        in_sight = {id(o) for o in gc.get_objects()}  # every generation the next collection walks
        assert id(more[0]) in in_sight and id(state[0]) not in in_sight and id(state[-1]["attrs"]) not in in_sight
        gc.collect()
        print(gc.get_freeze_count() - frozen, len(gc.get_objects(2)))
        """
    )
    newly_frozen, in_the_oldest = map(int, out.split())
    assert newly_frozen >= 1_000 and in_the_oldest == 0


def test_cyclic_garbage_made_after_a_freeze_is_still_collected() -> None:
    out = _run(
        """
        import gc, weakref
        from docpipe_local.long_lived import freeze_survivors

        class Node:
            pass

        freeze_survivors()
        gc.collect()
        a, b = Node(), Node()
        a.other, b.other = b, a  # a request's cycle
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        print(gone() is None)
        """
    )
    assert out == "True"

"""switchboard_sdk.framing, natively: the Rust SDK's LineSplitter tests, case for case.

Run: python3 plugins/python/tests/test_framing.py (`cargo xtask test` does). The module is
loaded by path: the package itself imports the WIT bindings, which exist only inside a
component.
"""

import importlib.util
import pathlib
import unittest

_path = pathlib.Path(__file__).resolve().parent.parent / "switchboard_sdk" / "framing.py"
_spec = importlib.util.spec_from_file_location("framing", _path)
framing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(framing)
LineSplitter = framing.LineSplitter


def split(pieces, max):
    splitter = LineSplitter(max)
    out = []
    for piece in pieces:
        out += [(line.decode(), cut) for line, cut in splitter.feed(piece)]
        assert len(splitter.pending()) <= max + 1
    return out


def chunks(data, step):
    return [data[i : i + step] for i in range(0, len(data), step)]


class LineSplitterTest(unittest.TestCase):
    def test_joins_pieces_and_splits_packed_lines(self):
        want = [("hello there", False), ("a", False), ("", False), ("b", False)]
        self.assertEqual(split([b"hel", b"lo th", b"ere\r", b"\na\n\r\nb\n"], 100), want)
        self.assertEqual(split(chunks(b"hello there\r\na\n\r\nb\n", 1), 100), want)

    def test_cuts_long_lines_and_drops_their_rest(self):
        for step in [1, 2, 3, 100]:
            pieces = chunks(b"abcd\r\nabcde\nabcdefghij\nok\nabc\rx\n", step)
            self.assertEqual(
                split(pieces, 4),
                [("abcd", False), ("abcd", True), ("abcd", True), ("ok", False), ("abc\r", True)],
                f"step {step}",
            )

    def test_memory_stays_bounded_on_an_endless_line(self):
        splitter = LineSplitter(4096)
        cuts = 0
        for _ in range(1000):
            for line, cut in splitter.feed(b"x" * 1000):
                self.assertTrue(cut and len(line) == 4096)
                cuts += 1
            self.assertLessEqual(len(splitter.pending()), 4097)
        self.assertEqual(cuts, 1, "one cut line; the rest of it is dropped")


if __name__ == "__main__":
    unittest.main()

"""Sum py-spy's collapsed stacks (`py-spy record --format raw`): the functions with
the most samples, by self time and by total (inclusive) time.

    .venv/bin/python bench/pyspy_top.py /tmp/prof-this-checkout-storm.txt [-n 15]
"""

from __future__ import annotations

import argparse
import collections
import re

# "name (path/to/file.py:123)" -> "name (file.py)"; lines differ, functions do not.
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<path>[^:()]*)(?::\d+)?\)$")


def short(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match["path"]
    if "nyo_realtime_ext/" in path and "site-packages" not in path:
        return f"{match['name']} (ours: {path.split('nyo_realtime_ext/', 1)[1]})"
    for marker in ("site-packages/", "lib/python3.", "nyo_realtime_ext/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['name']} ({path})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("-n", type=int, default=15)
    args = parser.parse_args()
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    with open(args.file) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            samples += n
            frames = [short(x) for x in stack.split(";")]
            own[frames[-1]] += n
            for frame in set(frames):
                total[frame] += n
    print(f"{samples} samples")
    # Inclusive time of our own functions: the event loop's trunk says nothing.
    ours = collections.Counter(
        {k: v for k, v in total.items() if "(ours: " in k and v < 0.8 * samples}
    )
    for title, counter in (("self", own), ("total, our functions", ours)):
        print(f"-- by {title}")
        for frame, n in counter.most_common(args.n):
            print(f"{100 * n / samples:5.1f} %  {frame}")


if __name__ == "__main__":
    main()

"""Run every benchmarks/*_bench.py main() (or the ones named: python -m benchmarks serving)."""
import importlib
import os
import pkgutil
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"


def main(argv) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules([os.path.dirname(__file__)])
                   if m.name.endswith("_bench"))
    wanted = [a if a.endswith("_bench") else f"{a}_bench" for a in argv] or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {names}", file=sys.stderr)
        return 2
    failed = []
    for name in wanted:
        print(f"\n===== {name} =====", flush=True)
        start = time.time()
        code = importlib.import_module(f"benchmarks.{name}").main([])
        print(f"===== {name}: exit {code}, {time.time() - start:.0f}s =====", flush=True)
        if code:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

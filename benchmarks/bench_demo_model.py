"""How well the demo model calls its tools: trained once (or taken from the cache), then scored.

Training gives different weights on different machines, so this is measured here and recorded
in RESULTS.md, never asserted in tests. Usage: ``python benchmarks/bench_demo_model.py [N]``.
"""

import sys
import time

from toolace_integrations.demo import ensure_demo_model, evaluate_demo_model


def main() -> None:
    questions = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    started = time.perf_counter()
    path = ensure_demo_model()
    trained = time.perf_counter() - started
    score = evaluate_demo_model(path, questions=questions)
    print(f"demo model {path} (ready in {trained:.0f} s)")
    print("| held-out questions | right tool | exact call | exact answer | exact 2nd-turn call |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {score.questions} | {score.tools:.0%} | {score.calls:.0%} | {score.answers:.0%} "
        f"| {score.later_turns:.0%} |"
    )


if __name__ == "__main__":
    main()

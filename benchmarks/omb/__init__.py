"""OpenMessaging-style benchmark framework: Strata side by side with its peers.

The framework follows the OpenMessaging Benchmark's public *format* (workload
file fields, latency percentiles, publish-delay) so that its figures can be read
next to published OMB results, scaled down to seconds so a laptop can run it.
``python -m benchmarks.omb.run --help`` is the entry point.
"""

from __future__ import annotations

"""What the tests and the benchmarks both stand on: real ZooKeeper servers, the real job service
and workers as processes, an S3 emulator, fault-injecting proxies, a retrying HTTP client and
the fixed test tokens. Not part of the zootrain package (pyproject.toml ships zootrain, app and
workers only); ``tests/`` and ``bench/`` import it, and never each other."""

"""zootrain's benchmark suite: ``python -m bench`` (``make bench``); see bench/README.md.

Every figure is printed next to a baseline measured in the same run, on the same ZooKeeper
server, so that a loaded or slow machine shifts both and the ratio stays meaningful.
"""

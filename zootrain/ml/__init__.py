"""The pure machine-learning core: datasets, sharding, training, merging, model files.

Knows nothing about ZooKeeper or HTTP; everything here is a plain function of its
inputs so that workers can compute their part independently.
"""

"""python -m edge_fer.config > deploy/config.example.yaml"""

from edge_fer.config.example import example_yaml

print(example_yaml(), end="")

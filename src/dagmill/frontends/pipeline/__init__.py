"""YAML pipelines (the dataNodes / processNodes language), compiled to a model graph."""

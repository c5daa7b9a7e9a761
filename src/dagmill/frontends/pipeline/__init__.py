"""YAML pipelines (the dataNodes / processNodes language), compiled to a model graph."""


def is_pipeline_file(ref: str) -> bool:
    """A pipeline file (YAML), as opposed to a ``MODULE:Task`` reference."""
    return ref.endswith((".yaml", ".yml"))

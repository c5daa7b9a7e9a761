"""Pure, frozen data: parameters, resources, task specs, graphs, ids and states.

Nothing here does I/O or keeps global state; every front door compiles to these types.
"""

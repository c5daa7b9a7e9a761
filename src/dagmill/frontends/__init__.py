"""Front doors: each compiles its definitions to a model graph; none runs anything itself."""

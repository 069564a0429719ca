"""Built-in adapters: one module per environment library, each imported lazily."""

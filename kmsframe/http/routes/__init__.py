"""The route tables: each module's ``routes(runtime)`` returns its KmsRoutes."""

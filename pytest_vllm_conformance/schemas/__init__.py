"""OpenAI's published response schemas, vendored as JSON Schema 2020-12 (see ``_vendor``)."""

"""Klaviyo's contract, shared by the client (``worker.klaviyo``) and the sandbox.

``operations``: every operation this project calls, with its caps and rate limits as data.
``spec``: the bundled OpenAPI subset (``openapi/``) and request/response validation.
Nothing here imports the rest of the product.
"""

"""ToolACE's language, pure: the prompt layout, tool schemas, the call grammar's text, parsing.

Everything here is plain Python over strings and JSON-shaped values: rendering a conversation,
normalizing tools, writing the grammar, reading and streaming the model's call syntax, checking
values against schemas, where a forced answer may honestly end early. It imports nothing of the
package but :mod:`toolace_integrations.errors` (and itself): no torch, no transformers, no
framework.
"""

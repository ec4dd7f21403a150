"""Contract fakes for what cannot run on these machines, each speaking the real wire format.

- LLM providers (OpenAI, Anthropic, Gemini, OpenRouter): ``ops.local.mock_provider``,
  the same mock local mode uses, with its failure knobs driven by ``llm.MockControl``.
- Langfuse: ``langfuse.py`` (ingestion and the public read API).

Each module's docstring says what it skips.
"""

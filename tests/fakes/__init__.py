"""Contract fakes for what cannot run on these machines, each speaking the real wire format.

- LLM providers (OpenAI, Anthropic, Gemini, OpenRouter): ``ops.local.mock_provider``,
  the same mock local mode uses, with its failure knobs driven by ``llm.MockControl``.
- Langfuse: ``langfuse.py`` (ingestion and the public read API).
- Qdrant: ``qdrant.py`` (the collection snapshot API).
- Telegram: ``telegram.py`` (the Bot API methods the observer uses).

Each module's docstring says what it refuses as the real service does
(tested in tests/integration/test_fakes_contract.py) and what it does not
check; docs/TESTING.md gathers them.
"""

"""LiteLLM callbacks loaded by the proxy itself (from PYTHONPATH; see aistack_langfuse)."""

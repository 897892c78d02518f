"""Retrieval backends behind one interface: embedded bm25s, pyserini, HTTP client, and a server."""

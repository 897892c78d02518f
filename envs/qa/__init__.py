"""Multi-hop QA environments with a retrieval tool (HotpotQA, 2WikiMultihopQA, MuSiQue)."""

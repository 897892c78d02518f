"""Multi-hop QA environments with a retrieval tool (HotpotQA, 2WikiMultihopQA, MuSiQue, SynthHop).

Registration only: the env module (and its retrieval backends) load when an env is made.
``offline_kwargs`` run each id on the shipped fictional sample (``envs/data/qa_sample.jsonl``) with
the embedded BM25 backend over ``envs/data/qa_corpus.jsonl``; SynthHop generates its world, so its
defaults are offline.
"""

from envs.core.registry import register_env

_OFFLINE = {"data_path": "sample", "corpus": "sample", "retriever": "bm25"}

register_env("AgentR1/HotpotQA-v0", "envs.qa.env:HotpotQAEnv", aliases=["hotpotqa-v0", "hotpotqa"],
             summary="HotpotQA multi-hop QA with a search tool; EM/F1/cover-EM, process rewards",
             offline_kwargs=dict(_OFFLINE))
register_env("AgentR1/2WikiMultihopQA-v0", "envs.qa.env:TwoWikiMultihopQAEnv",
             aliases=["2wikimultihopqa-v0", "2wiki-v0"],
             summary="2WikiMultihopQA multi-hop QA with a search tool; answer aliases",
             offline_kwargs=dict(_OFFLINE))
register_env("AgentR1/Musique-v0", "envs.qa.env:MusiqueEnv", aliases=["musique-v0"],
             summary="MuSiQue multi-hop QA with a search tool; answer aliases",
             offline_kwargs=dict(_OFFLINE))
register_env("AgentR1/SynthHop-v0", "envs.qa.synth_env:SynthHopEnv", aliases=["synthhop-v0", "synthhop"],
             summary="multi-hop QA with search over a generated fictional world; 1-3 hops, train/test by entity",
             offline_kwargs={})

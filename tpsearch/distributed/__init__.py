"""`tpsearch index --ray`: the embedding runs on a Ray cluster, everything else stays here.

The driver (this process) scans, chunks and owns the collection exactly as a local run does;
only `encode` moves to Ray actors, each loading the encoder once. Needs the optional extra:
`pip install "tpsearch[ray]"`. Ray itself is imported only when a pool starts.
"""

from tpsearch.distributed.pool import RayEncoderPool, RayEncoders, RaySettings, index_on_ray

__all__ = ["RayEncoderPool", "RayEncoders", "RaySettings", "index_on_ray"]

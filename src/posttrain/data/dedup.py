"""Near-duplicate removal with MinHash LSH (datasketch): rows whose word-trigram sets overlap more than
`threshold` (estimated Jaccard) with an earlier row are dropped, within and across sources."""
from __future__ import annotations

from posttrain.data.decontaminate import normalise


def _shingles(text: str) -> list[bytes]:
    words = normalise(text)
    grams = [" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))]
    return [g.encode() for g in grams]


def near_duplicates(texts: list[str], threshold: float = 0.8, num_perm: int = 64, seed: int = 0) -> list[int]:
    """Indices of texts that nearly repeat an earlier one (the first of each group is kept)."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    signatures = MinHash.bulk([_shingles(t) for t in texts], num_perm=num_perm, seed=seed)
    dropped = []
    for index, signature in enumerate(signatures):
        if lsh.query(signature):
            dropped.append(index)
        else:
            lsh.insert(str(index), signature)
    return dropped

"""k-nearest-neighbour and k-means callables for pytorch-metric-learning's AccuracyCalculator, in plain torch.

    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from slade_ext.evaluation import KNN, KMeans

    calc = AccuracyCalculator(knn_func=KNN(), kmeans_func=KMeans())

They follow the contracts of PML's FaissKNN / CustomKNN and FaissKMeans (pytorch_metric_learning/utils/inference.py):

- ``KNN()(query, k, reference, ref_includes_query) -> (distances [N, k], indices [N, k])``, torch tensors on the
  query's device, nearest first.
- ``KMeans()(x, nmb_clusters) -> labels [N]`` (int64, on x's device): the nearest final centroid of every row.

Neither needs faiss, neither caps k (faiss on the GPU stops at k = 2048), and neither holds an N x M distance matrix:
KNN computes the distances tile by tile (a block of query rows against a block of reference rows, at most
``element_budget`` distances at once), keeps each row's best k with torch.topk and merges the tiles' bests. The working
memory is O(rows x (cols + k)) besides the [N, k] output, on the CPU or on the GPU, wherever the inputs are (or
``device``). faiss is used only when asked for (``backend="faiss"`` or ``"auto"``) and installed.

Distances (``KNN(distance=...)``):

- ``"l2"`` (default, as PML's default knn_func, FaissKNN with faiss.IndexFlatL2 on the embeddings as given): squared
  Euclidean distance, smallest first. Like faiss it is computed as |q|^2 + |r|^2 - 2 q.r (clamped at 0), so an
  exact duplicate can come out a rounding error above 0.
- ``"euclidean"``: its square root, same order.
- ``"inner_product"`` (faiss.IndexFlatIP): q.r, largest first.
- ``"cosine"`` (PML's CustomKNN(CosineSimilarity())): the inner product of the L2-normalised rows, largest first.

Tie order (torch backend): each row is sorted by (distance, reference index) lexicographically -- among equal
distances (similarities) the smaller reference index comes first, both in which neighbours are selected at the k-th
place and in their order. (A float topk selects each tile's best k; a row whose k-th distance ties with an unselected
entry is selected again on packed (distance bits, index) int64 keys, which also order every selection and merge.
float64 inputs are computed in float64 and ordered with stable sorts.) The order is the same for every tile size and device for equal computed distances; the
float32 distances themselves are those of a matrix product, so they can differ in the last bit between the CPU and
the GPU or between tile shapes, which can reorder neighbours whose distances differ by that much.

``ref_includes_query=True`` (AccuracyCalculator's case when the reference is the query set: reference[:N] is query)
means that reference row i is query row i itself. PML's knn functions search k + 1 neighbours, where the query's own
match comes first at distance 0, then drop the query's own index from each row (or the last column when it is not
among the k + 1). KNN gives the result of that directly: query i's own reference row i is excluded from its search,
and the k nearest of the others are returned -- also when exact duplicates of the query tie with it at distance 0 or
rounding puts it behind them, so no row loses a neighbour or keeps itself. k may then be at most M - 1.
"""
from __future__ import annotations

import importlib
import operator

import torch

__all__ = ["KNN", "KMeans", "DISTANCES"]

DISTANCES = ("l2", "euclidean", "inner_product", "cosine")
BACKENDS = ("torch", "faiss", "auto")
DEFAULT_ELEMENT_BUDGET = 1 << 22  # distances held at once (about 4.2 million: ~70 MB of tile and keys at the peak)
_MIN_COLS = 1024  # narrowest reference tile when k alone takes up the budget
_LOW32 = 0xFFFFFFFF
_INT64_MAX = (1 << 63) - 1


# ---- validation ------------------------------------------------------------------------------------------------


def _check_matrix(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [num_rows, dim], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        bad = "NaN" if bool(torch.isnan(x).any()) else "infinite values"
        raise ValueError(f"{name} contains {bad}")
    return x


def _check_int(name: str, value, low: int, high: int, high_reason: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if value < low or value > high:
        raise ValueError(f"{name} must be between {low} and {high} ({high_reason}), got {value}")
    return value


def _check_budget(value) -> int:
    return _check_int("element_budget", value, 1, 1 << 62, "elements")


def _load_faiss():
    try:
        return importlib.import_module("faiss")
    except ImportError:
        return None


# ---- the tiled top-k -------------------------------------------------------------------------------------------


def _ordered_int(values: torch.Tensor, nonnegative: bool) -> torch.Tensor:
    """float32 -> int64 with the same order (IEEE-754 bits, negative floats' magnitude bits flipped); -0.0 -> +0.0.
    Consumes `values` (its storage is reused)."""
    bits = values.add_(0.0).view(torch.int32)
    if nonnegative:  # squared L2 after clamp_min(0): the bits already sort as the floats
        return bits.to(torch.int64)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)


def _from_ordered_int(ordered: torch.Tensor) -> torch.Tensor:
    ordered = ordered.to(torch.int32)
    return torch.where(ordered < 0, ordered ^ 0x7FFFFFFF, ordered).view(torch.float32)


def _full_keys(scores: torch.Tensor, c0: int, nonnegative: bool, self_pos) -> torch.Tensor:
    """(ordered score << 32 | reference index) of every entry of a tile; the excluded own entries get INT64_MAX."""
    keys = _ordered_int(scores, nonnegative).bitwise_left_shift_(32)
    keys.bitwise_or_(torch.arange(c0, c0 + scores.shape[1], device=scores.device))
    if self_pos is not None:
        keys[self_pos] = _INT64_MAX
    return keys


def _tile_smallest_keys(scores: torch.Tensor, c0: int, kk: int, nonnegative: bool, self_pos) -> torch.Tensor:
    """The kk lexicographically smallest (score, index) keys of every row of a float32 tile, sorted. Consumes
    `scores`. A float topk selects them; only where the kk-th score is tied with an unselected entry (which of the
    tied entries topk picked is unspecified) are that row's keys built over the whole tile and selected by key."""
    if kk >= scores.shape[1]:
        return torch.sort(_full_keys(scores, c0, nonnegative, self_pos), dim=1).values
    if self_pos is not None:
        scores[self_pos] = float("inf")
    # the kk + 1 smallest, sorted by key: the kk-th is tied with an unselected entry iff its score equals the last's
    values, local = torch.topk(scores, kk + 1, dim=1, largest=False, sorted=False)
    keys = torch.sort(_ordered_int(values, nonnegative).bitwise_left_shift_(32).bitwise_or_(local.add_(c0)),
                      dim=1).values
    tied = torch.nonzero((keys[:, kk - 1] >> 32) == (keys[:, kk] >> 32)).flatten()
    keys = keys[:, :kk]
    if len(tied):
        part = scores[tied]
        part_self = None
        if self_pos is not None:  # the own entries of the tied rows
            where = torch.full((len(scores),), -1, dtype=torch.int64, device=scores.device)
            where[self_pos[0]] = self_pos[1]
            cols = where[tied]
            has = cols >= 0
            part_self = (torch.nonzero(has).flatten(), cols[has])
        part_keys = _full_keys(part, c0, nonnegative, part_self)
        keys[tied] = torch.topk(part_keys, kk, dim=1, largest=False, sorted=True).values
    return keys


def _tile_shape(n_rows: int, n_cols: int, k: int, budget: int) -> tuple[int, int]:
    """(query rows, reference columns) of a tile: rows x (cols + k) <= budget where the budget allows it."""
    if n_cols + k <= budget:
        cols = n_cols
    else:
        cols = min(n_cols, max(budget - k, _MIN_COLS))
    rows = max(1, min(n_rows, budget // (cols + k)))
    return rows, cols


def _tile_scores(q: torch.Tensor, r: torch.Tensor, q_sq, r_sq, metric: str) -> torch.Tensor:
    """Scores to minimise: squared L2 (clamped at 0) or the negated similarity."""
    if metric == "l2":
        return torch.addmm(r_sq.unsqueeze(0), q, r.T, alpha=-2).add_(q_sq.unsqueeze(1)).clamp_min_(0)
    return (q @ r.T).neg_()


def _lex_smallest(scores: torch.Tensor, idx: torch.Tensor, k: int):
    """The k smallest (score, index) pairs of every row, in lexicographic order (float64 path: stable sorts)."""
    by_idx = torch.sort(idx, dim=1, stable=True).indices
    scores, idx = scores.gather(1, by_idx), idx.gather(1, by_idx)
    by_score = torch.sort(scores, dim=1, stable=True).indices[:, :k]
    return scores.gather(1, by_score), idx.gather(1, by_score)


def tiled_knn(query: torch.Tensor, reference: torch.Tensor, k: int, metric: str, exclude_self: bool,
              budget: int = DEFAULT_ELEMENT_BUDGET) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, indices) [N, k] of the k smallest scores (squared L2, or negated similarity) of every query row over
    the reference rows, sorted by (score, index); exclude_self leaves out reference row i for query row i.
    query/reference: 2-D, same device and dtype (float32 or float64), already normalised for cosine."""
    n, m = len(query), len(reference)
    device = query.device
    exact64 = query.dtype == torch.float64
    out_scores = torch.empty(n, k, dtype=query.dtype, device=device)
    out_idx = torch.empty(n, k, dtype=torch.int64, device=device)
    if n == 0 or k == 0:
        return out_scores, out_idx
    rows, cols = _tile_shape(n, m, k, budget)
    q_sq_all = (query * query).sum(1) if metric == "l2" else None
    r_sq_all = (reference * reference).sum(1) if metric == "l2" else None
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        q = query[r0:r1]
        q_sq = q_sq_all[r0:r1] if q_sq_all is not None else None
        best = best_idx = None  # best keys (float32 path) or (scores, idx) (float64 path) so far
        for c0 in range(0, m, cols):
            c1 = min(m, c0 + cols)
            scores = _tile_scores(q, reference[c0:c1], q_sq, r_sq_all[c0:c1] if r_sq_all is not None else None,
                                  metric)
            # this tile's (local row, local column) of query row i's own reference row i
            self_rows = None
            if exclude_self:
                lo, hi = max(r0, c0), min(r1, c1)
                if lo < hi:
                    self_rows = torch.arange(lo, hi, device=device)
            if exact64:
                if self_rows is not None:
                    scores[self_rows - r0, self_rows - c0] = float("inf")
                idx = torch.arange(c0, c1, device=device).expand(r1 - r0, -1)
                if self_rows is not None:
                    # an excluded entry must lose to a real +inf score, so it goes to the end via an index past m
                    idx = idx.clone()
                    idx[self_rows - r0, self_rows - c0] = m
                if best is not None:
                    scores, idx = torch.cat([best, scores], 1), torch.cat([best_idx, idx], 1)
                best, best_idx = _lex_smallest(scores, idx, min(k, scores.shape[1]))
            else:
                self_pos = None if self_rows is None else (self_rows - r0, self_rows - c0)
                keys = _tile_smallest_keys(scores, c0, min(k, c1 - c0), metric == "l2", self_pos)
                del scores
                if best is None:  # already sorted
                    best = keys
                    continue
                keys = torch.cat([best, keys], 1)
                kk = min(k, keys.shape[1])
                if kk == keys.shape[1]:
                    best = torch.sort(keys, dim=1).values
                else:
                    best = torch.topk(keys, kk, dim=1, largest=False, sorted=True).values
                del keys
        if exact64:
            out_scores[r0:r1], out_idx[r0:r1] = best, best_idx
        else:
            out_idx[r0:r1] = best & _LOW32
            out_scores[r0:r1] = _from_ordered_int(best.bitwise_right_shift(32))
    return out_scores, out_idx


# ---- KNN -------------------------------------------------------------------------------------------------------


class KNN:
    """knn_func for AccuracyCalculator / InferenceModel-style calls: ``KNN()(query, k, reference,
    ref_includes_query=False) -> (distances, indices)``; see the module docstring for distances and tie order.

    distance        "l2" (squared, as FaissKNN's IndexFlatL2; default) | "euclidean" | "inner_product" | "cosine"
    element_budget  distances computed at once (query rows x (reference columns + k)); bounds the working memory
    device          where to compute (e.g. "cuda" for CPU embeddings); default the query's device. The results are
                    returned on the query's device.
    backend         "torch" (default; deterministic tie order) | "faiss" (faiss.IndexFlatL2/IP on the CPU where the
                    request fits -- CPU float32/float16/bfloat16 tensors -- else torch; ImportError without faiss) |
                    "auto" (faiss where installed and it fits, else torch). faiss's rows are re-sorted by
                    (distance, index), but which of several tied neighbours fills the k-th place is faiss's choice.
    """

    def __init__(self, distance: str = "l2", element_budget: int = DEFAULT_ELEMENT_BUDGET, device=None,
                 backend: str = "torch"):
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "faiss" and _load_faiss() is None:
            raise ImportError("KNN(backend='faiss') needs faiss (pip install faiss-cpu); backend='auto' or 'torch' "
                              "run without it")
        self.distance = distance
        self.element_budget = _check_budget(element_budget)
        self.device = None if device is None else torch.device(device)
        self.backend = backend
        self.last_backend = None  # "torch" or "faiss": what the last call ran

    @property
    def is_inverted(self) -> bool:
        """True for similarities (largest first), as PML's distances say."""
        return self.distance in ("inner_product", "cosine")

    def __repr__(self):
        return (f"KNN(distance={self.distance!r}, element_budget={self.element_budget}, device={self.device}, "
                f"backend={self.backend!r})")

    def _validate(self, query, k, reference, ref_includes_query):
        query = _check_matrix("query", query)
        if reference is None:
            raise ValueError("reference is required (KNN keeps no index: pass the reference embeddings; for the "
                             "query set itself pass reference=query, ref_includes_query=True)")
        reference = _check_matrix("reference", reference)
        if reference.shape[1] != query.shape[1]:
            raise ValueError(f"query and reference must have the same dimension, got query {tuple(query.shape)} and "
                             f"reference {tuple(reference.shape)}")
        if reference.device != query.device:
            raise ValueError(f"query and reference must be on the same device, got {query.device} and "
                             f"{reference.device}")
        if not isinstance(ref_includes_query, bool):
            raise TypeError(f"ref_includes_query must be a bool, got {type(ref_includes_query).__name__}")
        m = len(reference)
        if ref_includes_query:
            if m < len(query):
                raise ValueError(f"ref_includes_query=True needs reference[:len(query)] to be the query, but "
                                 f"reference has {m} rows and query {len(query)}")
            if m < 2:
                raise ValueError(f"ref_includes_query=True needs at least 2 reference rows (each query's own row is "
                                 f"left out), got {m}")
            k = _check_int("k", k, 1, m - 1, f"the number of reference rows {m} minus the query's own row")
        else:
            if m == 0:
                raise ValueError("reference has no rows")
            k = _check_int("k", k, 1, m, f"the number of reference rows {m}")
        return query, k, reference

    def _faiss_fits(self, query, reference) -> bool:
        return (self.backend != "torch" and query.device.type == "cpu" and (self.device is None or self.device.type
                == "cpu") and query.dtype != torch.float64 and reference.dtype != torch.float64
                and _load_faiss() is not None)

    def __call__(self, query, k, reference=None, ref_includes_query=False):
        query, k, reference = self._validate(query, k, reference, ref_includes_query)
        out_device = query.device
        if self._faiss_fits(query, reference):
            self.last_backend = "faiss"
            distances, indices = self._faiss(query, k, reference, ref_includes_query)
            return distances.to(out_device), indices.to(out_device)
        self.last_backend = "torch"
        device = self.device or query.device
        dtype = torch.float64 if torch.float64 in (query.dtype, reference.dtype) else torch.float32
        q, r = query.to(device, dtype), reference.to(device, dtype)
        if self.distance == "cosine":
            q, r = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(r, dim=1)
        metric = "l2" if self.distance in ("l2", "euclidean") else "ip"
        with torch.no_grad():
            scores, indices = tiled_knn(q, r, k, metric, ref_includes_query, self.element_budget)
        if metric == "ip":
            scores = scores.neg_()
        elif self.distance == "euclidean":
            scores = scores.sqrt_()
        return scores.to(out_device), indices.to(out_device)

    def _faiss(self, query, k, reference, ref_includes_query):
        faiss = _load_faiss()
        q = query.detach().float().contiguous().numpy()
        r = reference.detach().float().contiguous().numpy()
        if self.distance == "cosine":
            faiss.normalize_L2(q)
            faiss.normalize_L2(r)
        index = (faiss.IndexFlatL2 if self.distance in ("l2", "euclidean") else faiss.IndexFlatIP)(q.shape[1])
        index.add(r)
        search_k = k + 1 if ref_includes_query else k
        distances, indices = index.search(q, search_k)
        distances, indices = torch.from_numpy(distances), torch.from_numpy(indices)
        if ref_includes_query:  # PML's return_results: drop the own index, or the last column where it is absent
            own = indices == torch.arange(len(indices)).unsqueeze(1)
            own[~own.any(1), -1] = True
            keep = ~own
            distances, indices = distances[keep].view(len(q), k), indices[keep].view(len(q), k)
        if self.distance == "euclidean":
            distances = distances.clamp_min_(0).sqrt_()
        # (distance, index) order within the selection: one sort of packed (ordered score, index) keys
        scores = distances.neg() if self.is_inverted else distances.clone()
        keys = _ordered_int(scores, False).bitwise_left_shift_(32).bitwise_or_(indices)
        keys = torch.sort(keys, dim=1).values
        scores = _from_ordered_int(keys.bitwise_right_shift(32))
        return (scores.neg_() if self.is_inverted else scores), keys & _LOW32


# ---- KMeans ----------------------------------------------------------------------------------------------------


def _nearest_centroid(x: torch.Tensor, centroids: torch.Tensor, budget: int):
    """(squared distance to, index of) every row's nearest centroid (ties: the lower centroid index), in row chunks."""
    c_sq = (centroids * centroids).sum(1)
    rows = max(1, budget // max(len(centroids), 1))
    dists, ids = [], []
    for s in range(0, len(x), rows):
        part = x[s:s + rows]
        d = torch.addmm(c_sq.unsqueeze(0), part, centroids.T, alpha=-2).add_((part * part).sum(1, keepdim=True))
        best = d.min(1)
        dists.append(best.values.clamp_min_(0))
        ids.append(best.indices)
    return torch.cat(dists), torch.cat(ids)


class KMeans:
    """kmeans_func for AccuracyCalculator: ``KMeans()(x, nmb_clusters) -> labels`` (int64 [N], on x's device), the
    nearest final centroid of every row, L2 like faiss.Kmeans.

    torch backend: k-means++ seeding (from a CPU generator seeded with ``seed``, so the seeding is the same on every
    device), then up to ``niter`` Lloyd iterations (stopping early once no assignment changes); a cluster left empty
    takes over the point farthest from its centroid. Deterministic for a seed on a device.
    niter / seed default to faiss.Kmeans's (25, 1234). backend: "torch" (default) | "faiss" (faiss.Kmeans(d, k,
    niter=niter, seed=seed, **faiss_kwargs) on CPU float32, as FaissKMeans) | "auto" (faiss where installed).
    """

    def __init__(self, niter: int = 25, seed: int = 1234, element_budget: int = DEFAULT_ELEMENT_BUDGET, device=None,
                 backend: str = "torch", **faiss_kwargs):
        self.niter = _check_int("niter", niter, 0, 1 << 31, "iterations")
        self.seed = _check_int("seed", seed, 0, (1 << 63) - 1, "a generator seed")
        self.element_budget = _check_budget(element_budget)
        self.device = None if device is None else torch.device(device)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "faiss" and _load_faiss() is None:
            raise ImportError("KMeans(backend='faiss') needs faiss (pip install faiss-cpu); backend='auto' or "
                              "'torch' run without it")
        if faiss_kwargs and backend == "torch":
            raise TypeError(f"unexpected keyword arguments {sorted(faiss_kwargs)} (faiss options need "
                            f"backend='faiss' or 'auto')")
        self.backend = backend
        self.faiss_kwargs = faiss_kwargs
        self.last_backend = None

    def __repr__(self):
        return f"KMeans(niter={self.niter}, seed={self.seed}, backend={self.backend!r})"

    def __call__(self, x, nmb_clusters):
        x = _check_matrix("x", x)
        if len(x) == 0:
            raise ValueError("x has no rows")
        k = _check_int("nmb_clusters", nmb_clusters, 1, len(x), f"the number of rows of x, {len(x)}")
        if self.backend != "torch" and _load_faiss() is not None:
            self.last_backend = "faiss"
            return self._faiss(x, k).to(x.device)
        self.last_backend = "torch"
        device = self.device or x.device
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        with torch.no_grad():
            return self._torch(x.to(device, dtype), k).to(x.device)

    def _faiss(self, x, k):
        faiss = _load_faiss()
        data = x.detach().float().cpu().contiguous().numpy()
        km = faiss.Kmeans(data.shape[1], k, niter=self.niter, seed=self.seed, **self.faiss_kwargs)
        km.train(data)
        return torch.from_numpy(km.index.search(data, 1)[1][:, 0].astype("int64"))

    def _seed(self, x, k, generator):
        """k-means++: each next centroid drawn with probability proportional to the squared distance to the nearest
        centroid so far (uniformly when all points coincide with the centroids)."""
        n = len(x)
        picks = [int(torch.randint(n, (1,), generator=generator))]
        nearest = _nearest_centroid(x, x[picks[0]:picks[0] + 1], self.element_budget)[0].double().cpu()
        for _ in range(1, k):
            total = float(nearest.sum())
            if total > 0:
                pick = int(torch.multinomial(nearest / total, 1, generator=generator))
            else:
                pick = int(torch.randint(n, (1,), generator=generator))
            picks.append(pick)
            d = _nearest_centroid(x, x[pick:pick + 1], self.element_budget)[0].double().cpu()
            nearest = torch.minimum(nearest, d)
        return x[torch.tensor(picks, device=x.device)].clone()

    def _torch(self, x, k):
        generator = torch.Generator().manual_seed(self.seed)
        centroids = self._seed(x, k, generator)
        ids = None
        for _ in range(self.niter):
            dist, new_ids = _nearest_centroid(x, centroids, self.element_budget)
            if ids is not None and torch.equal(new_ids, ids):
                break
            ids = new_ids
            counts = torch.bincount(ids, minlength=k)
            for empty in torch.nonzero(counts == 0).flatten().tolist():
                far = int(dist.argmax())
                ids[far], dist[far] = empty, 0.0
            counts = torch.bincount(ids, minlength=k).clamp_min(1).to(x.dtype)
            centroids = torch.zeros_like(centroids).index_add_(0, ids, x) / counts[:, None]
        return _nearest_centroid(x, centroids, self.element_budget)[1]

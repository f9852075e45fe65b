// CPU epilogues of the mining family (csrc/common/mining.cpp): pair mining and confident-pair selection, batch-hard
// triplets (one per anchor) and triplet-margin triplets (all qualifying, capped). Every output is written at
// offsets counted first, so results do not depend on the number of threads.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "epilogue_utils.h"
#include "slade/drivers.h"
#include "slade/rules.h"
#include "slade/tiles.h"

namespace slade {
namespace cpu {

using detail::for_each_verdict;
using detail::kRowChunk;
using detail::LabelView;
using detail::TileLabels32;
using detail::pair_margin_verdicts;

// ---- pair mining / selection ----------------------------------------------------------------------------------

// The multi-similarity verdicts of one row: select_pair's MultiSimilarity case with its row extrema (inverted = true),
// restated without branches on int32 labels as pair_margin_verdicts is. The pair (i, i) of a self-comparison reads
// +inf during the two passes: the positives' minimum ignores it and v - eps < max_neg rejects it.
template <typename T>
void multi_similarity_verdicts(T* row, int32_t li, const int32_t* ref_labels, int64_t m, int64_t self_j, T eps,
                               uint8_t* verdict, int64_t& n_pos, int64_t& n_neg) {
  const T inf = std::numeric_limits<T>::infinity();
  const bool has_self = self_j >= 0 && self_j < m;
  const T self_value = has_self ? row[self_j] : T(0);
  if (has_self) row[self_j] = inf;
  T min_pos = inf, max_neg = -inf;
  for (int64_t j = 0; j < m; ++j) {
    const T v = row[j];
    const bool same = ref_labels[j] == li;
    const T as_pos = same ? v : inf, as_neg = same ? -inf : v;
    min_pos = as_pos < min_pos ? as_pos : min_pos;
    max_neg = as_neg > max_neg ? as_neg : max_neg;
  }
  int64_t np = 0, nn = 0;
  for (int64_t j = 0; j < m; ++j) {
    const T v = row[j];
    const bool same = ref_labels[j] == li;
    const bool pos = same & (v - eps < max_neg);
    const bool neg = !same & (v + eps > min_pos);
    verdict[j] = uint8_t(pos) | uint8_t(neg << 1);
    np += pos;
    nn += neg;
  }
  if (has_self) row[self_j] = self_value;
  n_pos = np;
  n_neg = nn;
}

// A tile's pair verdicts, one byte per pair (bit 0: positive, bit 1: negative), with each row's offsets among the
// tile's positives and negatives (pos_at[i], neg_at[i]; the totals at b).
struct PairVerdicts {
  int64_t row_begin = 0, m = 0;
  std::vector<uint8_t> verdict;
  std::vector<int64_t> pos_at, neg_at;  // b + 1 each
};

// The first pass over the tile's rows: each row's extrema (when the rule needs them), the rule applied once per pair,
// and the counts turned into offsets by a prefix sum. kInverted and kKind are template arguments so the inner loops
// carry no per-element rule or distance branch.
template <typename T, bool kInverted, PairRuleKind kKind>
void judge_pairs(const Tile& tile, const PairRule& rule, PairVerdicts& out) {
  const int64_t b = tile.sim.size(0), m = tile.sim.size(1);
  const LabelView lab(tile);
  T* writable_sim = tile.sim.data_ptr<T>();  // multi_similarity_verdicts marks (i, i) for a moment
  const T* sim = writable_sim;
  PairRule fixed = rule;
  fixed.kind = kKind;
  fixed.inverted = kInverted;
  out.row_begin = tile.row_begin;
  out.m = m;
  out.verdict.resize(size_t(b) * size_t(m));
  out.pos_at.assign(b + 1, 0);
  out.neg_at.assign(b + 1, 0);
  uint8_t* verdict = out.verdict.data();
  int64_t *pos_at = out.pos_at.data(), *neg_at = out.neg_at.data();
  const TileLabels32 labels32(tile, kKind != PairRuleKind::Confident && kInverted);
  const bool fast = labels32.usable();
  at::parallel_for(0, b, kRowChunk, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t li = lab.row(i), self_j = tile.exclude_self ? tile.row_begin + i : -1;
      const T* row = sim + i * m;
      if (fast && kKind == PairRuleKind::PairMargin) {
        pair_margin_verdicts<T>(row, labels32.rows[i], labels32.refs.data(), m, self_j, T(rule.pos_margin),
                                T(rule.neg_margin), verdict + i * m, pos_at[i + 1], neg_at[i + 1]);
        continue;
      }
      if (fast && kKind == PairRuleKind::MultiSimilarity) {
        multi_similarity_verdicts<T>(writable_sim + i * m, labels32.rows[i], labels32.refs.data(), m, self_j,
                                     T(rule.epsilon), verdict + i * m, pos_at[i + 1], neg_at[i + 1]);
        continue;
      }
      auto extrema = RowExtrema<T>::empty();
      if (kKind == PairRuleKind::MultiSimilarity) {
        for (int64_t j = 0; j < m; ++j) {
          const int64_t lj = lab.ref(j);
          extrema.add(closeness_value(row[j], kInverted), is_pos_candidate(li, lj, j == self_j),
                      is_neg_candidate(li, lj));
        }
      }
      uint8_t* row_verdict = verdict + i * m;
      int64_t n_pos = 0, n_neg = 0;
      for (int64_t j = 0; j < m; ++j) {
        bool pos, neg;
        select_pair(fixed, closeness_value(row[j], kInverted), li, lab.ref(j), j == self_j, extrema, pos, neg);
        row_verdict[j] = uint8_t(pos) | uint8_t(neg << 1);
        n_pos += pos;
        n_neg += neg;
      }
      pos_at[i + 1] = n_pos;
      neg_at[i + 1] = n_neg;
    }
  });
  for (int64_t i = 0; i < b; ++i) {
    pos_at[i + 1] += pos_at[i];
    neg_at[i + 1] += neg_at[i];
  }
}

// The second pass: each row's pairs (ascending j) from its verdict bytes, at its offsets from the given addresses
// {anchors_pos, refs_pos, anchors_neg, refs_neg}. The order is row-major and independent of the number of threads,
// and every index is written once: on unclustered embeddings nearly all N x M pairs qualify, and writing them is
// most of the op's time.
void write_pairs(const PairVerdicts& v, const std::array<int64_t*, 4>& out) {
  int64_t *pos_a = out[0], *pos_j = out[1], *neg_a = out[2], *neg_j = out[3];
  const int64_t rows = int64_t(v.pos_at.size()) - 1;
  at::parallel_for(0, rows, kRowChunk, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t gi = v.row_begin + i;
      int64_t p = v.pos_at[i], n = v.neg_at[i];
      if (p == v.pos_at[i + 1] && n == v.neg_at[i + 1]) continue;
      for_each_verdict(v.verdict.data() + i * v.m, v.m, [&](int64_t j, uint8_t verdict) {
        if (verdict & 1) {
          pos_a[p] = gi;
          pos_j[p++] = j;
        }
        if (verdict & 2) {
          neg_a[n] = gi;
          neg_j[n++] = j;
        }
      });
    }
  });
}

TileOutputs<4> mine_pairs_tile(const Tile& tile, const PairRule& rule) {
  auto verdicts = std::make_shared<PairVerdicts>();
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "mine_pairs_tile", [&] {
    switch (rule.kind) {
      case PairRuleKind::MultiSimilarity:
        return rule.inverted ? judge_pairs<scalar_t, true, PairRuleKind::MultiSimilarity>(tile, rule, *verdicts)
                             : judge_pairs<scalar_t, false, PairRuleKind::MultiSimilarity>(tile, rule, *verdicts);
      case PairRuleKind::PairMargin:
        return rule.inverted ? judge_pairs<scalar_t, true, PairRuleKind::PairMargin>(tile, rule, *verdicts)
                             : judge_pairs<scalar_t, false, PairRuleKind::PairMargin>(tile, rule, *verdicts);
      case PairRuleKind::Confident:  // always cosine similarity of the basis projections
        return judge_pairs<scalar_t, true, PairRuleKind::Confident>(tile, rule, *verdicts);
    }
  });
  const int64_t n_pos = verdicts->pos_at.back(), n_neg = verdicts->neg_at.back();
  TileOutputs<4> out;
  // A selected pair takes 16 bytes of indices, its verdict 1: from one pair in 16 on, keeping the verdicts costs
  // no more memory than the tile's own outputs and spares their copy into the op's outputs.
  if (16 * (n_pos + n_neg) >= int64_t(verdicts->verdict.size()) && n_pos + n_neg > 0) {
    out.counts = {n_pos, n_pos, n_neg, n_neg};
    out.held_bytes = int64_t(verdicts->verdict.size()) +
                     int64_t(sizeof(int64_t)) * int64_t(verdicts->pos_at.size() + verdicts->neg_at.size());
    out.write = [verdicts](const std::array<int64_t*, 4>& at) { write_pairs(*verdicts, at); };
    return out;
  }
  for (int k = 0; k < 2; ++k) {
    out.tensors[k] = empty_indices(n_pos, tile.sim.device());
    out.tensors[k + 2] = empty_indices(n_neg, tile.sim.device());
  }
  write_pairs(*verdicts, {out.tensors[0].data_ptr<int64_t>(), out.tensors[1].data_ptr<int64_t>(),
                          out.tensors[2].data_ptr<int64_t>(), out.tensors[3].data_ptr<int64_t>()});
  return out;
}

// ---- triplets -------------------------------------------------------------------------------------------------

// Batch hard's rule (harder_positive / harder_negative, rules.h, inverted: closeness, larger is closer) for one row
// on int32 labels. The row goes by blocks of 64: each block's smallest positive and largest negative closeness are
// reductions that `omp simd` lets the compiler vectorise (without it GCC keeps a float min scalar), and a block
// replaces the row's best only when strictly harder, so the row's hardest value is first reached in the block
// kept; the first index holding it there is the smallest index among ties, as the one-pass loop gives. The pair
// (i, i) of a self-comparison reads +inf meanwhile (restored after), so it never is the hardest positive.
// Through harder_positive one pair at a time the loop was the miner's largest cost besides the GEMM, with 40 % of
// the GEMM's perf samples (benchmarks/RESULTS.md, "Batch hard by blocks").
template <typename T>
void batch_hard_row(T* row, int32_t li, const int32_t* ref_labels, int64_t m, int64_t self_j, int64_t& jp,
                    int64_t& jn) {
  constexpr int64_t kBlock = 64;
  const T inf = std::numeric_limits<T>::infinity();
  const bool has_self = self_j >= 0 && self_j < m;
  const T self_value = has_self ? row[self_j] : T(0);
  if (has_self) row[self_j] = inf;
  T min_pos = inf, max_neg = -inf;
  int64_t pos_block = 0, neg_block = 0, n_same = 0;
  for (int64_t j0 = 0; j0 < m; j0 += kBlock) {
    const int64_t j1 = std::min(m, j0 + kBlock);
    T block_min = inf, block_max = -inf;
    int64_t block_same = 0;
#pragma omp simd reduction(min : block_min) reduction(max : block_max) reduction(+ : block_same)
    for (int64_t j = j0; j < j1; ++j) {
      const T v = row[j];
      const bool same = ref_labels[j] == li;
      const T as_pos = same ? v : inf, as_neg = same ? -inf : v;
      block_min = as_pos < block_min ? as_pos : block_min;
      block_max = as_neg > block_max ? as_neg : block_max;
      block_same += same;
    }
    if (block_min < min_pos) {
      min_pos = block_min;
      pos_block = j0;
    }
    if (block_max > max_neg) {
      max_neg = block_max;
      neg_block = j0;
    }
    n_same += block_same;
  }
  const int64_t n_pos = n_same - int64_t(has_self), n_neg = m - n_same;
  // The first j >= begin with match(j). A side whose every value is at +-inf left no block strictly harder: its
  // block stays 0, the row's start.
  auto first = [&](int64_t begin, auto&& match) {
    for (int64_t j = begin; j < m; ++j) {
      if (match(j)) return j;
    }
    return int64_t(-1);
  };
  jp = n_pos == 0 ? -1 : first(pos_block, [&](int64_t j) {
    return ref_labels[j] == li && j != self_j && row[j] == min_pos;
  });
  jn = n_neg == 0 ? -1 : first(neg_block, [&](int64_t j) { return ref_labels[j] != li && row[j] == max_neg; });
  if (has_self) row[self_j] = self_value;
}

// One row in one pass (labels beyond int32, or a cosine tile read as L2): the hardest positive and negative in
// locals, ties -> smallest index.
template <typename T, bool kInverted>
void batch_hard_row_one_pass(const T* row, int64_t li, const int64_t* ref_labels, int64_t m, int64_t self_j,
                             int64_t& jp, int64_t& jn) {
  jp = -1;
  jn = -1;
  T best_pos = 0, best_neg = 0;
  for (int64_t j = 0; j < m; ++j) {
    const T v = closeness_value(row[j], kInverted);
    if (is_pos_candidate(li, ref_labels[j], j == self_j)) {
      if (jp < 0 || harder_positive(v, best_pos, kInverted)) {
        jp = j;
        best_pos = v;
      }
    } else if (is_neg_candidate(li, ref_labels[j]) && (jn < 0 || harder_negative(v, best_neg, kInverted))) {
      jn = j;
      best_neg = v;
    }
  }
}

template <typename T, bool kInverted>
void batch_hard_rows(const Tile& tile, std::vector<int64_t>& hard_pos, std::vector<int64_t>& hard_neg) {
  const int64_t b = tile.sim.size(0), m = tile.sim.size(1);
  const int64_t* row_labels = tile.row_labels.data_ptr<int64_t>();
  const int64_t* ref_labels = tile.ref_labels.data_ptr<int64_t>();
  T* sim = tile.sim.data_ptr<T>();  // batch_hard_row marks (i, i) for a moment
  const TileLabels32 labels32(tile, kInverted);
  const bool fast = labels32.usable();
  at::parallel_for(0, b, kRowChunk, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t self_j = tile.exclude_self ? tile.row_begin + i : -1;
      T* row = sim + i * m;
      if (fast) {
        batch_hard_row<T>(row, labels32.rows[i], labels32.refs.data(), m, self_j, hard_pos[i], hard_neg[i]);
      } else {
        batch_hard_row_one_pass<T, kInverted>(row, row_labels[i], ref_labels, m, self_j, hard_pos[i], hard_neg[i]);
      }
    }
  });
}

std::array<at::Tensor, 3> mine_batch_hard_tile(const Tile& tile, bool inverted) {
  const int64_t b = tile.sim.size(0);
  std::vector<int64_t> hard_pos(b, -1), hard_neg(b, -1);
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "mine_batch_hard_tile", [&] {
    if (inverted) {
      batch_hard_rows<scalar_t, true>(tile, hard_pos, hard_neg);
    } else {
      batch_hard_rows<scalar_t, false>(tile, hard_pos, hard_neg);
    }
  });
  std::vector<int64_t> a, p, n;
  for (int64_t i = 0; i < b; ++i) {
    if (hard_pos[i] < 0 || hard_neg[i] < 0) continue;
    a.push_back(tile.row_begin + i);
    p.push_back(hard_pos[i]);
    n.push_back(hard_neg[i]);
  }
  auto opts = tile.sim.options().dtype(at::kLong);
  auto as_tensor = [&](const std::vector<int64_t>& v) {
    return at::tensor(at::ArrayRef<int64_t>(v.data(), v.size()), opts);
  };
  return {as_tensor(a), as_tensor(p), as_tensor(n)};
}

// One positive's triplets: for each of the anchor's negatives, 1 where (anchor, positive, negative) passes the
// triplet rule, with their count. The rule is triplet_selected's (rules.h) restated on template constants and
// without branches, as pair_margin_verdicts restates select_pair's, so that the compiler vectorises the loop: on
// unclustered embeddings an anchor's 7 positives meet ~1,000 negatives each, and judged one by one through
// triplet_selected (a callback per triplet) the miner took twice as long (benchmarks/RESULTS.md, "Triplet
// verdicts without branches"). The CUDA epilogue keeps triplet_selected; the two meet in tests/ext/test_mining.py
// on a GPU.
template <typename T, bool kInverted, TripletType kType>
int64_t triplet_verdicts(T v_ap, const T* neg_values, int64_t n_neg, T margin, uint8_t* verdict) {
  int64_t count = 0;
  for (int64_t n = 0; n < n_neg; ++n) {
    const T tm = kInverted ? v_ap - neg_values[n] : neg_values[n] - v_ap;
    bool selected;
    if constexpr (kType == TripletType::All) {
      selected = tm <= margin;
    } else if constexpr (kType == TripletType::Hard) {
      selected = (tm <= margin) & (tm <= T(0));
    } else if constexpr (kType == TripletType::SemiHard) {
      selected = (tm <= margin) & (tm > T(0));
    } else {
      selected = tm > margin;
    }
    verdict[n] = uint8_t(selected);
    count += selected;
  }
  return count;
}

// Two passes over the tile's rows, as the pair epilogue makes: the first counts each anchor's triplets (at most
// rule.max_per_anchor), a prefix sum places them, the second writes them in lexicographic (p, n) order. Each pass
// gathers the anchor's positives and its negatives' closeness values once, then judges every positive against the
// contiguous values.
template <typename T, bool kInverted, TripletType kType>
std::array<at::Tensor, 3> mine_triplet_rows(const Tile& tile, const TripletRule& rule) {
  const int64_t b = tile.sim.size(0), m = tile.sim.size(1);
  const int64_t* row_labels = tile.row_labels.data_ptr<int64_t>();
  const int64_t* ref_labels = tile.ref_labels.data_ptr<int64_t>();
  const T* sim = tile.sim.data_ptr<T>();
  const T margin = T(rule.margin);
  struct Scratch {
    std::vector<int64_t> pos, neg;
    std::vector<T> neg_values;
    std::vector<uint8_t> verdict;
  };
  // Calls on_positive(pj, verdicts, count) for row i's positives in ascending order, until it returns false.
  auto visit_row = [&](int64_t i, Scratch& s, auto&& on_positive) {
    const int64_t gi = tile.row_begin + i, li = row_labels[i];
    const T* row = sim + i * m;
    s.pos.clear();
    s.neg.clear();
    s.neg_values.clear();
    for (int64_t j = 0; j < m; ++j) {
      if (is_pos_candidate(li, ref_labels[j], tile.exclude_self && gi == j)) s.pos.push_back(j);
      if (is_neg_candidate(li, ref_labels[j])) {
        s.neg.push_back(j);
        s.neg_values.push_back(closeness_value(row[j], kInverted));
      }
    }
    if (s.neg.empty()) return;
    s.verdict.resize(s.neg.size());
    for (int64_t pj : s.pos) {
      const int64_t count = triplet_verdicts<T, kInverted, kType>(
          closeness_value(row[pj], kInverted), s.neg_values.data(), int64_t(s.neg.size()), margin, s.verdict.data());
      if (count > 0 && !on_positive(pj, s, count)) return;
    }
  };
  const int64_t cap = rule.max_per_anchor;
  std::vector<int64_t> counts(b + 1, 0);
  at::parallel_for(0, b, 1, [&](int64_t i0, int64_t i1) {
    Scratch s;
    for (int64_t i = i0; i < i1; ++i) {
      int64_t& c = counts[i + 1];
      visit_row(i, s, [&](int64_t, const Scratch&, int64_t count) {
        c = cap >= 0 ? std::min(cap, c + count) : c + count;
        return cap < 0 || c < cap;
      });
    }
  });
  for (int64_t i = 0; i < b; ++i) counts[i + 1] += counts[i];
  std::array<at::Tensor, 3> out;
  for (auto& t : out) t = empty_indices(counts[b], tile.sim.device());
  int64_t *a = out[0].data_ptr<int64_t>(), *p = out[1].data_ptr<int64_t>(), *n = out[2].data_ptr<int64_t>();
  at::parallel_for(0, b, 1, [&](int64_t i0, int64_t i1) {
    Scratch s;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t gi = tile.row_begin + i, end = counts[i + 1];
      int64_t w = counts[i];
      visit_row(i, s, [&](int64_t pj, const Scratch& sc, int64_t) {
        for_each_verdict(sc.verdict.data(), int64_t(sc.neg.size()), [&](int64_t k, uint8_t) {
          if (w == end) return;
          a[w] = gi;
          p[w] = pj;
          n[w++] = sc.neg[k];
        });
        return w < end;
      });
    }
  });
  return out;
}

std::array<at::Tensor, 3> mine_triplets_tile(const Tile& tile, const TripletRule& rule) {
  std::array<at::Tensor, 3> out;
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "mine_triplets_tile", [&] {
    auto by_type = [&](auto inverted) {
      constexpr bool kInverted = decltype(inverted)::value;
      switch (rule.type) {
        case TripletType::All:
          return mine_triplet_rows<scalar_t, kInverted, TripletType::All>(tile, rule);
        case TripletType::Hard:
          return mine_triplet_rows<scalar_t, kInverted, TripletType::Hard>(tile, rule);
        case TripletType::SemiHard:
          return mine_triplet_rows<scalar_t, kInverted, TripletType::SemiHard>(tile, rule);
        case TripletType::Easy:
          return mine_triplet_rows<scalar_t, kInverted, TripletType::Easy>(tile, rule);
      }
      TORCH_INTERNAL_ASSERT(false, "unknown triplet type");
    };
    out = rule.inverted ? by_type(std::true_type{}) : by_type(std::false_type{});
  });
  return out;
}

}  // namespace cpu
}  // namespace slade

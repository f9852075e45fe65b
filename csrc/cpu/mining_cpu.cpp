// CPU epilogues of the mining family (csrc/common/mining.cpp): pair mining and confident-pair selection, batch-hard
// triplets (one per anchor) and triplet-margin triplets (all qualifying, capped). Rows are split into fixed chunks
// so results do not depend on the number of threads.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "epilogue_utils.h"
#include "slade/rules.h"
#include "slade/tiles.h"

namespace slade {
namespace cpu {

using detail::kRowChunk;
using detail::LabelView;

// ---- pair mining / selection ----------------------------------------------------------------------------------

// Each chunk of rows computes its rows' extrema when the rule needs them, then selects in one pass into
// chunk-local buffers (ascending j per row); the buffers are copied to the outputs at the chunks' offsets, so the
// order is row-major and independent of the number of threads. kInverted and kKind are template arguments so the
// inner loop carries no per-element rule or distance branch.
template <typename T, bool kInverted, PairRuleKind kKind>
void mine_pairs_rows(const Tile& tile, const PairRule& rule, std::array<at::Tensor, 4>& out) {
  const int64_t b = tile.sim.size(0), m = tile.sim.size(1);
  const LabelView lab(tile);
  const T* sim = tile.sim.data_ptr<T>();
  PairRule fixed = rule;
  fixed.kind = kKind;
  fixed.inverted = kInverted;
  const int64_t n_chunks = (b + kRowChunk - 1) / kRowChunk;
  struct Selected {
    std::vector<int64_t> pos_a, pos_j, neg_a, neg_j;
  };
  std::vector<Selected> chunks(n_chunks);
  at::parallel_for(0, n_chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      Selected& out_c = chunks[c];
      for (int64_t i = c * kRowChunk; i < std::min(b, (c + 1) * kRowChunk); ++i) {
        const int64_t gi = tile.row_begin + i, li = lab.row(i);
        const int64_t self_j = tile.exclude_self ? gi : -1;
        const T* row = sim + i * m;
        auto extrema = RowExtrema<T>::empty();
        if (kKind == PairRuleKind::MultiSimilarity) {
          for (int64_t j = 0; j < m; ++j) {
            const int64_t lj = lab.ref(j);
            extrema.add(closeness_value(row[j], kInverted), is_pos_candidate(li, lj, j == self_j),
                        is_neg_candidate(li, lj));
          }
        }
        for (int64_t j = 0; j < m; ++j) {
          bool pos, neg;
          select_pair(fixed, closeness_value(row[j], kInverted), li, lab.ref(j), j == self_j, extrema, pos, neg);
          if (pos) {
            out_c.pos_a.push_back(gi);
            out_c.pos_j.push_back(j);
          }
          if (neg) {
            out_c.neg_a.push_back(gi);
            out_c.neg_j.push_back(j);
          }
        }
      }
    }
  });
  std::vector<int64_t> pos_at(n_chunks + 1, 0), neg_at(n_chunks + 1, 0);
  for (int64_t c = 0; c < n_chunks; ++c) {
    pos_at[c + 1] = pos_at[c] + int64_t(chunks[c].pos_j.size());
    neg_at[c + 1] = neg_at[c] + int64_t(chunks[c].neg_j.size());
  }
  auto long_opts = tile.sim.options().dtype(at::kLong);
  for (int k = 0; k < 2; ++k) {
    out[k] = at::empty({pos_at[n_chunks]}, long_opts);
    out[k + 2] = at::empty({neg_at[n_chunks]}, long_opts);
  }
  std::array<int64_t*, 4> dst{out[0].data_ptr<int64_t>(), out[1].data_ptr<int64_t>(), out[2].data_ptr<int64_t>(),
                              out[3].data_ptr<int64_t>()};
  at::parallel_for(0, n_chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const Selected& sel = chunks[c];
      std::copy(sel.pos_a.begin(), sel.pos_a.end(), dst[0] + pos_at[c]);
      std::copy(sel.pos_j.begin(), sel.pos_j.end(), dst[1] + pos_at[c]);
      std::copy(sel.neg_a.begin(), sel.neg_a.end(), dst[2] + neg_at[c]);
      std::copy(sel.neg_j.begin(), sel.neg_j.end(), dst[3] + neg_at[c]);
    }
  });
}

std::array<at::Tensor, 4> mine_pairs_tile(const Tile& tile, const PairRule& rule) {
  std::array<at::Tensor, 4> out;
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "mine_pairs_tile", [&] {
    switch (rule.kind) {
      case PairRuleKind::MultiSimilarity:
        return rule.inverted ? mine_pairs_rows<scalar_t, true, PairRuleKind::MultiSimilarity>(tile, rule, out)
                             : mine_pairs_rows<scalar_t, false, PairRuleKind::MultiSimilarity>(tile, rule, out);
      case PairRuleKind::PairMargin:
        return rule.inverted ? mine_pairs_rows<scalar_t, true, PairRuleKind::PairMargin>(tile, rule, out)
                             : mine_pairs_rows<scalar_t, false, PairRuleKind::PairMargin>(tile, rule, out);
      case PairRuleKind::Confident:  // always cosine similarity of the basis projections
        return mine_pairs_rows<scalar_t, true, PairRuleKind::Confident>(tile, rule, out);
    }
  });
  return out;
}

// ---- triplets -------------------------------------------------------------------------------------------------

// One row: the hardest positive and negative in locals (kept in registers), ties -> smallest index.
template <typename T, bool kInverted>
void batch_hard_rows(const Tile& tile, std::vector<int64_t>& hard_pos, std::vector<int64_t>& hard_neg) {
  const int64_t b = tile.sim.size(0), m = tile.sim.size(1);
  const int64_t* row_labels = tile.row_labels.data_ptr<int64_t>();
  const int64_t* ref_labels = tile.ref_labels.data_ptr<int64_t>();
  const T* sim = tile.sim.data_ptr<T>();
  at::parallel_for(0, b, 8, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t gi = tile.row_begin + i, li = row_labels[i];
      const int64_t self_j = tile.exclude_self ? gi : -1;
      const T* row = sim + i * m;
      int64_t jp = -1, jn = -1;
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
      hard_pos[i] = jp;
      hard_neg[i] = jn;
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

std::array<at::Tensor, 3> mine_triplets_tile(const Tile& tile, const TripletRule& rule) {
  const int64_t b = tile.sim.size(0), m = tile.sim.size(1);
  const int64_t* row_labels = tile.row_labels.data_ptr<int64_t>();
  const int64_t* ref_labels = tile.ref_labels.data_ptr<int64_t>();
  auto opts = tile.sim.options().dtype(at::kLong);
  std::array<at::Tensor, 3> out;
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "mine_triplets_tile", [&] {
    const scalar_t* sim = tile.sim.data_ptr<scalar_t>();
    // Visits row i's selected (p, n) in lexicographic order, at most rule.max_per_anchor of them.
    auto visit_row = [&](int64_t i, std::vector<int64_t>& pos, std::vector<int64_t>& neg, auto&& on_triplet) {
      const int64_t gi = tile.row_begin + i, li = row_labels[i];
      const scalar_t* row = sim + i * m;
      pos.clear();
      neg.clear();
      for (int64_t j = 0; j < m; ++j) {
        if (is_pos_candidate(li, ref_labels[j], tile.exclude_self && gi == j)) pos.push_back(j);
        if (is_neg_candidate(li, ref_labels[j])) neg.push_back(j);
      }
      int64_t emitted = 0;
      for (int64_t pj : pos) {
        const scalar_t v_ap = closeness_value(row[pj], rule.inverted);
        for (int64_t nj : neg) {
          if (!triplet_selected(rule, v_ap, closeness_value(row[nj], rule.inverted))) continue;
          on_triplet(pj, nj);
          if (++emitted == rule.max_per_anchor) return;
        }
      }
    };
    std::vector<int64_t> counts(b + 1, 0);
    at::parallel_for(0, b, 1, [&](int64_t i0, int64_t i1) {
      std::vector<int64_t> pos, neg;
      for (int64_t i = i0; i < i1; ++i) visit_row(i, pos, neg, [&](int64_t, int64_t) { ++counts[i + 1]; });
    });
    for (int64_t i = 0; i < b; ++i) counts[i + 1] += counts[i];
    for (auto& t : out) t = at::empty({counts[b]}, opts);
    int64_t *a = out[0].data_ptr<int64_t>(), *p = out[1].data_ptr<int64_t>(), *n = out[2].data_ptr<int64_t>();
    at::parallel_for(0, b, 1, [&](int64_t i0, int64_t i1) {
      std::vector<int64_t> pos, neg;
      for (int64_t i = i0; i < i1; ++i) {
        int64_t w = counts[i];
        visit_row(i, pos, neg, [&](int64_t pj, int64_t nj) {
          a[w] = tile.row_begin + i;
          p[w] = pj;
          n[w++] = nj;
        });
      }
    });
  });
  return out;
}

}  // namespace cpu
}  // namespace slade

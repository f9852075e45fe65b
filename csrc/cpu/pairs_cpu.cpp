// CPU epilogues over one similarity tile: pair statistics, their gradient weights, and pair mining/selection.
// Rows are split into fixed chunks so results (sums included) do not depend on the number of threads.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "slade/rules.h"
#include "slade/tiles.h"

namespace slade {
namespace cpu {
namespace {

constexpr int64_t kRowChunk = 8;  // rows per parallel work item

// Label of row i / reference j, or -1 when the op has no labels.
struct LabelView {
  const int64_t* rows = nullptr;
  const int64_t* refs = nullptr;
  explicit LabelView(const Tile& t)
      : rows(t.row_labels.defined() ? t.row_labels.data_ptr<int64_t>() : nullptr),
        refs(t.ref_labels.defined() ? t.ref_labels.data_ptr<int64_t>() : nullptr) {}
  int64_t row(int64_t i) const { return rows ? rows[i] : -1; }
  int64_t ref(int64_t j) const { return refs ? refs[j] : -1; }
};

}  // namespace

void pair_stats_tile(const Tile& tile, at::Tensor& acc) {
  const int64_t b = tile.sim.size(0), m = tile.sim.size(1);
  const LabelView lab(tile);
  const int64_t n_chunks = (b + kRowChunk - 1) / kRowChunk;
  std::vector<std::array<double, 6>> partial(n_chunks, std::array<double, 6>{});
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "pair_stats_tile", [&] {
    const scalar_t* sim = tile.sim.data_ptr<scalar_t>();
    at::parallel_for(0, n_chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        auto& p = partial[c];
        for (int64_t i = c * kRowChunk; i < std::min(b, (c + 1) * kRowChunk); ++i) {
          const int64_t gi = tile.row_begin + i, li = lab.row(i);
          const scalar_t* row = sim + i * m;
          for (int64_t j = 0; j < m; ++j) {
            const int64_t lj = lab.ref(j);
            if (!stats_pair_counts(li, lj, tile.exclude_self && gi == j)) continue;
            const double s = double(row[j]);
            const int k = li == lj ? 0 : 3;
            p[k] += s;
            p[k + 1] += s * s;
            p[k + 2] += 1.0;
          }
        }
      }
    });
  });
  std::array<double, 6> total{};
  for (const auto& p : partial)
    for (int k = 0; k < 6; ++k) total[k] += p[k];
  acc.add_(at::tensor(std::vector<double>(total.begin(), total.end()), acc.options()));
}

void pair_weights_tile(Tile& tile, const std::array<double, 4>& coef) {
  const int64_t b = tile.sim.size(0), m = tile.sim.size(1);
  const LabelView lab(tile);
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "pair_weights_tile", [&] {
    scalar_t* sim = tile.sim.data_ptr<scalar_t>();
    at::parallel_for(0, b, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t gi = tile.row_begin + i, li = lab.row(i);
        scalar_t* row = sim + i * m;
        for (int64_t j = 0; j < m; ++j) {
          const int64_t lj = lab.ref(j);
          const double s = double(row[j]);
          double w = 0.0;
          if (stats_pair_counts(li, lj, tile.exclude_self && gi == j)) {
            w = li == lj ? coef[0] + coef[1] * s : coef[2] + coef[3] * s;
          }
          row[j] = scalar_t(w);
        }
      }
    });
  });
}

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

}  // namespace cpu
}  // namespace slade

// CPU epilogues over one similarity tile: pair statistics, their gradient weights, and pair mining/selection.
// Rows are split into fixed chunks so results (sums included) do not depend on the number of threads.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

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

// Row i's pass over its references: extrema first when the rule needs them (once per row, kept for the write
// pass), then count, then write at the row's offsets (row-major order, independent of the number of threads).
// kInverted is the rule's flag as a template argument, so the cosine loops carry no per-element distance branch.
template <typename T, bool kInverted>
void mine_pairs_rows(const Tile& tile, const PairRule& rule, std::array<at::Tensor, 4>& out) {
  const int64_t b = tile.sim.size(0), m = tile.sim.size(1);
  const LabelView lab(tile);
  const T* sim = tile.sim.data_ptr<T>();
  const bool needs_extrema = rule_needs_extrema(rule);
  std::vector<RowExtrema<T>> extrema(b, RowExtrema<T>::empty());
  // Visits the row's selected pairs in ascending j, calling on_pair(j, is_pos, is_neg).
  auto visit_row = [&](int64_t i, auto&& on_pair) {
    const int64_t gi = tile.row_begin + i, li = lab.row(i);
    const int64_t self_j = tile.exclude_self ? gi : -1;
    const T* row = sim + i * m;
    for (int64_t j = 0; j < m; ++j) {
      bool pos, neg;
      select_pair(rule, closeness_value(row[j], kInverted), li, lab.ref(j), j == self_j, extrema[i], pos, neg);
      on_pair(j, pos, neg);
    }
  };
  std::vector<int64_t> n_pos(b + 1, 0), n_neg(b + 1, 0);
  at::parallel_for(0, b, kRowChunk, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      if (needs_extrema) {
        const int64_t gi = tile.row_begin + i, li = lab.row(i);
        const int64_t self_j = tile.exclude_self ? gi : -1;
        const T* row = sim + i * m;
        auto e = RowExtrema<T>::empty();
        for (int64_t j = 0; j < m; ++j) {
          const int64_t lj = lab.ref(j);
          e.add(closeness_value(row[j], kInverted), is_pos_candidate(li, lj, j == self_j), is_neg_candidate(li, lj));
        }
        extrema[i] = e;
      }
      int64_t np = 0, nn = 0;  // branch-free counting
      visit_row(i, [&](int64_t, bool pos, bool neg) {
        np += pos;
        nn += neg;
      });
      n_pos[i + 1] = np;
      n_neg[i + 1] = nn;
    }
  });
  for (int64_t i = 0; i < b; ++i) {
    n_pos[i + 1] += n_pos[i];
    n_neg[i + 1] += n_neg[i];
  }
  auto long_opts = tile.sim.options().dtype(at::kLong);
  for (int k = 0; k < 2; ++k) {
    out[k] = at::empty({n_pos[b]}, long_opts);
    out[k + 2] = at::empty({n_neg[b]}, long_opts);
  }
  int64_t *a1 = out[0].data_ptr<int64_t>(), *p = out[1].data_ptr<int64_t>();
  int64_t *a2 = out[2].data_ptr<int64_t>(), *n = out[3].data_ptr<int64_t>();
  at::parallel_for(0, b, kRowChunk, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      if (n_pos[i + 1] == n_pos[i] && n_neg[i + 1] == n_neg[i]) continue;  // nothing selected in this row
      int64_t wp = n_pos[i], wn = n_neg[i];
      const int64_t gi = tile.row_begin + i;
      visit_row(i, [&](int64_t j, bool pos, bool neg) {
        if (pos) {
          a1[wp] = gi;
          p[wp++] = j;
        }
        if (neg) {
          a2[wn] = gi;
          n[wn++] = j;
        }
      });
    }
  });
}

std::array<at::Tensor, 4> mine_pairs_tile(const Tile& tile, const PairRule& rule) {
  std::array<at::Tensor, 4> out;
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "mine_pairs_tile", [&] {
    if (rule.inverted) {
      mine_pairs_rows<scalar_t, true>(tile, rule, out);
    } else {
      mine_pairs_rows<scalar_t, false>(tile, rule, out);
    }
  });
  return out;
}

}  // namespace cpu
}  // namespace slade

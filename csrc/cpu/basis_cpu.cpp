// CPU epilogues of the basis family (csrc/common/basis.cpp): pair statistics and their gradient weights.
// Rows are split into fixed chunks so results (sums included) do not depend on the number of threads.
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

}  // namespace cpu
}  // namespace slade

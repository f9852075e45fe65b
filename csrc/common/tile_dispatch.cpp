// Sends each tile to the epilogue of its device (tiles.h).
#include "slade/tiles.h"

namespace slade {

// True when the tile must go to the CUDA epilogue; a CPU-only build refuses device tensors clearly.
static bool on_cuda(const Tile& tile) {
#ifdef WITH_CUDA
  return tile.sim.is_cuda();
#else
  TORCH_CHECK(tile.sim.is_cpu(), "slade_ext was built without CUDA kernels; got a ", tile.sim.device(), " tensor");
  return false;
#endif
}

#ifdef WITH_CUDA
#define SLADE_TILE_DISPATCH(fn, tile, ...) (on_cuda(tile) ? cuda::fn(tile, __VA_ARGS__) : cpu::fn(tile, __VA_ARGS__))
#else
#define SLADE_TILE_DISPATCH(fn, tile, ...) (on_cuda(tile), cpu::fn(tile, __VA_ARGS__))
#endif

void pair_stats_tile(const Tile& tile, at::Tensor& acc) { SLADE_TILE_DISPATCH(pair_stats_tile, tile, acc); }
void pair_weights_tile(Tile& tile, const std::array<double, 4>& coef) {
  SLADE_TILE_DISPATCH(pair_weights_tile, tile, coef);
}
std::array<at::Tensor, 4> mine_pairs_tile(const Tile& tile, const PairRule& rule) {
  return SLADE_TILE_DISPATCH(mine_pairs_tile, tile, rule);
}
std::array<at::Tensor, 3> mine_batch_hard_tile(const Tile& tile, bool inverted) {
  return SLADE_TILE_DISPATCH(mine_batch_hard_tile, tile, inverted);
}
std::array<at::Tensor, 3> mine_triplets_tile(const Tile& tile, const TripletRule& rule) {
  return SLADE_TILE_DISPATCH(mine_triplets_tile, tile, rule);
}

}  // namespace slade

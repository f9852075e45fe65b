// Device dispatch of the tile epilogues (tiles.h, loss_tiles.h): the one style every driver in csrc/common/ uses.
//
//   SLADE_TILE_DISPATCH(fn, tile, args...)  calls  slade::cuda::fn(tile, args...)  for a CUDA tile,
//                                            else  slade::cpu::fn(tile, args...)
//
// `tile` is a named Tile (it is read twice). A CPU-only build refuses a device tile with a clear message.
#pragma once

#include <c10/util/Exception.h>

#include "slade/tiles.h"

namespace slade {

// True when the tile must go to the CUDA epilogue; anything that is neither a CUDA nor a CPU tile is refused.
inline bool on_cuda(const Tile& tile) {
#ifdef WITH_CUDA
  if (tile.sim.is_cuda()) return true;
#endif
  TORCH_CHECK(tile.sim.is_cpu(), "slade_ext was built without CUDA kernels; got a ", tile.sim.device(), " tensor");
  return false;
}

}  // namespace slade

#ifdef WITH_CUDA
#define SLADE_TILE_DISPATCH(fn, tile, ...) \
  (::slade::on_cuda(tile) ? ::slade::cuda::fn(tile, __VA_ARGS__) : ::slade::cpu::fn(tile, __VA_ARGS__))
#else
#define SLADE_TILE_DISPATCH(fn, tile, ...) (::slade::on_cuda(tile), ::slade::cpu::fn(tile, __VA_ARGS__))
#endif

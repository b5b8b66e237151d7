// Token routing (TREAD, Krause et al., ICCV 2025; CompVis/tread dit.py and routing_module.py), a
// training-only alternative to masking: before backbone block `start_block` a random fraction of
// the tokens leaves the stream; blocks start_block..end_block (inclusive) run on the others; after
// end_block every routed token re-enters at its own position with its state from before
// start_block. The loss covers all tokens, inference runs every block, and there are no new
// parameters. Where this differs from TREAD's code: see docs/masking.md.
// Legend: B batch, T tokens, Tr tokens through the route = T - int(T * ratio), D width.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace microdit::model {

struct TokenRoute {
  int64_t start_block = 0;  // first backbone block on the routed stream
  int64_t end_block = -1;   // last one, inclusive; end_block < start_block: no block (no effect)
  at::Tensor ids_keep;      // (B,Tr) int64: the tokens that run through the route's blocks
};

// TREAD's Router.get_mask count: T - int(T * ratio) tokens stay in the stream.
int64_t routed_tokens(int64_t num_tokens, double ratio);

// The tokens with the smallest of the uniform `noise` (B,T) stay (the official get_mask's order,
// so the trainer's per-sample mask draws serve both strategies).
TokenRoute route_from_noise(const at::Tensor& noise, double ratio, int64_t start_block,
                            int64_t end_block);

// (B,T,D) -> (B,Tr,D): the tokens that stay in the stream.
at::Tensor start_route(const at::Tensor& x, const TokenRoute& route);

// The route's outputs (B,Tr,D) written back at their positions into `before` (B,T,D), the stream
// as it was before start_block; every other token keeps that state.
at::Tensor end_route(const at::Tensor& x, const at::Tensor& before, const TokenRoute& route);

}  // namespace microdit::model

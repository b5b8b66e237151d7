// What one micro-batch of a training step consumes: its samples and their random draws
// (train/sample_draws.h), prepared on the host by the trainer's prefetch thread, or already on
// the device (the graphed step's static inputs, microdit-bench's step alone).
#pragma once
#include <array>

#include "microdit/data/dataset.h"
#include "microdit/train/sample_draws.h"

namespace microdit::train {

struct MicroBatchInput {
  data::Batch batch;
  SampleDraws draws;
  // Every tensor the step reads, for copies to and from the device.
  std::array<at::Tensor*, 6> tensors() {
    return {&batch.latents, &batch.captions,   &draws.rnd_normal,
            &draws.noise,   &draws.mask_noise, &draws.keep_caption};
  }
};

}  // namespace microdit::train

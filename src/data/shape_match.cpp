#include "microdit/data/shape_match.h"

#include <c10/util/StringUtil.h>

#include <stdexcept>

#include "microdit/data/builtin_shapes.h"
#include "microdit/io/tensor_map.h"

namespace microdit::data {

std::vector<int> read_shapes(const at::Tensor& images, const at::Tensor& palette,
                             PixelRange range) {
  const auto labels = palette_labels(images, palette, range);  // (N,H,W)
  return read_shapes_of_labels(labels, read_colors_of_labels(labels, palette.size(0)));
}

std::vector<int> read_shapes_of_labels(const at::Tensor& labels,
                                       const std::vector<ColorReading>& colors) {
  const int64_t N = labels.size(0), S = labels.size(1);
  if (labels.size(2) != S) {
    throw std::invalid_argument(c10::str("read_shapes: images must be square, got ",
                                         io::shape_string(labels.sizes()), " pixels"));
  }
  std::vector<int64_t> objects;
  for (const ColorReading& reading : colors) objects.push_back(reading.object);
  // (N,S*S): 1 on the object's pixels; no pixel where no object colour was read (-1).
  const auto masks = labels.eq(at::tensor(objects).view({N, 1, 1})).flatten(1).to(at::kFloat);
  const auto areas = masks.sum(1, /*keepdim=*/true);  // (N,1)
  // Sums of 0/1 products are exact in float32 and equal IoUs divide equal integers, so the
  // comparisons below are exact and the reading deterministic.
  std::vector<float> best_iou(static_cast<std::size_t>(N), -1);
  std::vector<int> shapes(static_cast<std::size_t>(N), -1);
  const SizeRange sizes = shape_sizes(S);
  // Templates in shape order, one (shape, size) at a time: every position of that size. A later
  // shape must beat the best IoU so far, so ties keep the lower shape index.
  for (int shape = 0; shape < static_cast<int>(kShapeNames.size()); ++shape) {
    for (int64_t size = sizes.min; size <= sizes.max; ++size) {
      std::vector<at::Tensor> placements;
      for (int64_t y0 = 0; y0 + size <= S; ++y0) {
        for (int64_t x0 = 0; x0 + size <= S; ++x0) {
          const ShapeSpec spec{.shape = shape, .size = size, .x0 = x0, .y0 = y0};
          placements.push_back(shape_mask(spec, S).flatten());
        }
      }
      const auto templates = at::stack(placements).to(at::kFloat);  // (K,S*S)
      const auto overlap = masks.mm(templates.t());                  // (N,K)
      const auto iou = overlap / (areas + templates.sum(1) - overlap);
      const auto best = std::get<0>(iou.max(1)).contiguous();  // (N)
      const float* values = best.data_ptr<float>();
      for (int64_t n = 0; n < N; ++n) {
        if (values[n] > best_iou[n]) {
          best_iou[n] = values[n];
          shapes[n] = shape;
        }
      }
    }
  }
  for (int64_t n = 0; n < N; ++n) {
    if (best_iou[n] < kMinShapeIoU) shapes[n] = -1;
  }
  return shapes;
}

}  // namespace microdit::data

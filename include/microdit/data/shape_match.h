// Shape reading: the prompt match's stand-in for "does the image show the prompted shape". The
// object's pixels (those whose nearest palette colour is the object colour read_colors reads) form
// a binary mask, compared by IoU with every shape at every size and position the built-in
// generator draws at the image's size (data::shape_mask, so the templates are exactly its
// renders). The read shape is the best template's; ties go to the lower shape index. A clean
// render reads as its own shape (IoU 1) wherever no other shape covers the same pixels.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "microdit/data/prompt_match.h"

namespace microdit::data {

// Below this best IoU the object's pixels look like none of the generator's shapes (scattered
// pixels, a smear over the image) and the reading is -1, so that noise does not score a third.
inline constexpr double kMinShapeIoU = 0.5;

// images (N,3,S,S), palette (P,3) in [0,1] -> N indices into kShapeNames; -1 where no object
// colour is read or no template reaches kMinShapeIoU.
std::vector<int> read_shapes(const at::Tensor& images, const at::Tensor& palette,
                             PixelRange range = PixelRange::kSigned);

// The same from the images' palette labels (N,S,S) and colour readings (prompt_match reads both
// once for the colours and the shapes).
std::vector<int> read_shapes_of_labels(const at::Tensor& labels,
                                       const std::vector<ColorReading>& colors);

}  // namespace microdit::data

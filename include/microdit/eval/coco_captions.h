// The zero-shot COCO protocol's captions (the paper's FID-30K and CLIP score): COUNT distinct
// COCO-2014 validation images drawn with a fixed seed, one of each image's captions, and the
// image file each caption belongs to (its real counterpart for FID). The draw is the same on every
// platform: a Fisher-Yates shuffle of the images sorted by id, driven by std::mt19937_64 (whose
// output sequence the C++ standard fixes) with unbiased rejection sampling.
//
// The drawn list is kept as a manifest (JSON lines: index, image_id, file_name, caption) next to
// the generated images, so generation and evaluation use the same captions.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace microdit::eval {

struct CocoCaption {
  int64_t index = 0;  // position in the drawn list; generated image NNNNN.png
  int64_t image_id = 0;
  std::string file_name;  // COCO_val2014_000000XXXXXX.jpg
  std::string caption;
};

// From a COCO captions file (annotations/captions_val2014.json: "images" with id and file_name,
// "annotations" with image_id and caption). Throws std::runtime_error naming the file when it is
// malformed, an annotation names an unknown image, or there are fewer than `count` captioned
// images.
std::vector<CocoCaption> draw_coco_captions(const std::filesystem::path& captions_json,
                                            int64_t count, uint64_t seed);

// Written atomically; read back with the line number of a malformed line in the error.
void write_caption_manifest(const std::filesystem::path& path,
                            const std::vector<CocoCaption>& captions);
std::vector<CocoCaption> read_caption_manifest(const std::filesystem::path& path);

}  // namespace microdit::eval

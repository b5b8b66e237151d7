#include "microdit/eval/coco_captions.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "microdit/io/atomic_file.h"
#include "microdit/io/json.h"
#include "microdit/util/error_message.h"

namespace microdit::eval {
namespace {

struct CocoImage {
  std::string file_name;
  std::vector<std::string> captions;  // in file order
};

std::map<int64_t, CocoImage> read_coco(const std::filesystem::path& path) {
  const io::Json json = io::read_json_file(path);
  std::map<int64_t, CocoImage> images;  // sorted by id: the draw does not depend on file order
  try {
    for (const auto& image : io::json_to_array(io::json_at(json, "images"))) {
      images[io::json_to_int64(io::json_at(image, "id"))].file_name =
          io::json_to_string(io::json_at(image, "file_name"));
    }
    for (const auto& a : io::json_to_array(io::json_at(json, "annotations"))) {
      const int64_t id = io::json_to_int64(io::json_at(a, "image_id"));
      const auto it = images.find(id);
      if (it == images.end()) {
        throw std::runtime_error(fmt::format("an annotation names image_id {}, not in \"images\"", id));
      }
      it->second.captions.push_back(io::json_to_string(io::json_at(a, "caption")));
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(
        fmt::format("{}: not a COCO captions file: {}", path.string(), util::error_message(e)));
  }
  std::erase_if(images, [](const auto& item) { return item.second.captions.empty(); });
  return images;
}

// Uniform in [0, n) from the engine's 64-bit output, without modulo bias.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x = rng();
  while (x >= limit) x = rng();
  return x % n;
}

}  // namespace

std::vector<CocoCaption> draw_coco_captions(const std::filesystem::path& captions_json,
                                            int64_t count, uint64_t seed) {
  const auto images = read_coco(captions_json);
  if (count < 1 || count > static_cast<int64_t>(images.size())) {
    throw std::runtime_error(fmt::format("{}: {} captioned images, cannot draw {}",
                                         captions_json.string(), images.size(), count));
  }
  std::vector<const std::pair<const int64_t, CocoImage>*> order;
  for (const auto& item : images) order.push_back(&item);
  std::mt19937_64 rng(seed);
  // The first `count` steps of a Fisher-Yates shuffle; then one caption per drawn image.
  for (int64_t i = 0; i < count; ++i) {
    const auto j = i + static_cast<int64_t>(uniform_below(rng, order.size() - i));
    std::swap(order[i], order[j]);
  }
  std::vector<CocoCaption> drawn;
  for (int64_t i = 0; i < count; ++i) {
    const auto& [id, image] = *order[i];
    const auto pick = uniform_below(rng, image.captions.size());
    drawn.push_back({i, id, image.file_name, image.captions[pick]});
  }
  return drawn;
}

void write_caption_manifest(const std::filesystem::path& path,
                            const std::vector<CocoCaption>& captions) {
  io::write_file_atomically(path, [&](std::ostream& out) {
    for (const auto& c : captions) {
      io::Json line = io::Json::object();
      line["index"] = c.index;
      line["image_id"] = c.image_id;
      line["file_name"] = c.file_name;
      line["caption"] = c.caption;
      out << line.dump() << "\n";
    }
  });
}

std::vector<CocoCaption> read_caption_manifest(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": cannot open the caption manifest");
  std::vector<CocoCaption> captions;
  std::string text;
  for (int64_t n = 1; std::getline(in, text); ++n) {
    const std::string where = fmt::format("{}:{}", path.string(), n);
    const io::Json line = io::parse_json(text, where);
    try {
      captions.push_back({io::json_to_int64(io::json_at(line, "index")),
                          io::json_to_int64(io::json_at(line, "image_id")),
                          io::json_to_string(io::json_at(line, "file_name")),
                          io::json_to_string(io::json_at(line, "caption"))});
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("{}: {}", where, util::error_message(e)));
    }
    if (captions.back().index != n - 1) {
      throw std::runtime_error(fmt::format("{}:{}: index {} out of order", path.string(), n,
                                           captions.back().index));
    }
  }
  if (captions.empty()) throw std::runtime_error(path.string() + ": no captions");
  return captions;
}

}  // namespace microdit::eval

// The COCO protocol's caption draw and its manifest.
#include <gtest/gtest.h>

#include <set>

#include <nlohmann/json.hpp>

#include "microdit/eval/coco_captions.h"
#include "microdit/io/json.h"
#include "test_support.h"

namespace microdit {
namespace {
namespace fs = std::filesystem;

TEST(CocoCaptions, DrawsDistinctImagesWithOneOfTheirCaptions) {
  test::TempDir tmp("coco_draw");
  test::write_tiny_coco(tmp.path, 12);
  const auto drawn = eval::draw_coco_captions(tmp.path / "captions_val2014.json", 8, 0);
  ASSERT_EQ(drawn.size(), 8u);
  std::set<int64_t> ids;
  for (int64_t i = 0; i < 8; ++i) {
    const auto& c = drawn[i];
    EXPECT_EQ(c.index, i);
    ids.insert(c.image_id);
    const int64_t k = (c.image_id - 100) / 3;
    EXPECT_LT(k, 12) << "the image without captions was drawn";
    EXPECT_EQ(c.file_name, "COCO_val2014_" + std::to_string(1000000 + c.image_id) + ".png");
    EXPECT_TRUE(c.caption.starts_with("a photo of thing " + std::to_string(k) + ", take "))
        << c.caption << " is not a caption of image " << c.image_id;
  }
  EXPECT_EQ(ids.size(), 8u) << "an image was drawn twice";
}

TEST(CocoCaptions, TheSeedDecidesTheDrawNotTheFileOrder) {
  test::TempDir tmp("coco_seed");
  test::write_tiny_coco(tmp.path, 30);
  const auto file = tmp.path / "captions_val2014.json";
  const auto a = eval::draw_coco_captions(file, 10, 5);
  const auto b = eval::draw_coco_captions(file, 10, 5);
  const auto c = eval::draw_coco_captions(file, 10, 6);
  auto same = [](const auto& x, const auto& y) {
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (x[i].image_id != y[i].image_id || x[i].caption != y[i].caption) return false;
    }
    return true;
  };
  EXPECT_TRUE(same(a, b));
  EXPECT_FALSE(same(a, c));
  // The same images and captions listed in reverse order draw the same list.
  auto json = io::read_json_file(file);
  auto reversed = io::Json::object();
  for (const char* key : {"images", "annotations"}) {
    auto items = json.at(key);
    std::reverse(items.begin(), items.end());
    reversed[key] = io::Json(items);
  }
  // Captions of one image keep their order: reversing annotations reverses it, so compare ids.
  test::write_bytes(tmp.path / "reversed.json", reversed.dump());
  const auto r = eval::draw_coco_captions(tmp.path / "reversed.json", 10, 5);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(r[i].image_id, a[i].image_id) << i;
}

TEST(CocoCaptions, BadFilesAreNamedErrors) {
  test::TempDir tmp("coco_bad");
  test::write_tiny_coco(tmp.path, 4);
  const auto file = tmp.path / "captions_val2014.json";
  EXPECT_TRUE(test::throws_with([&] { eval::draw_coco_captions(file, 5, 0); }, file.string(),
                                {"4 captioned images, cannot draw 5"}));
  test::write_bytes(tmp.path / "orphan.json",
                    R"({"images": [{"id": 1, "file_name": "a.jpg"}],
                        "annotations": [{"image_id": 2, "caption": "x"}]})");
  EXPECT_TRUE(test::throws_with([&] { eval::draw_coco_captions(tmp.path / "orphan.json", 1, 0); },
                                (tmp.path / "orphan.json").string(), {"image_id 2"}));
  test::write_bytes(tmp.path / "other.json", R"({"images": []})");
  EXPECT_TRUE(test::throws_with([&] { eval::draw_coco_captions(tmp.path / "other.json", 1, 0); },
                                (tmp.path / "other.json").string(), {"not a COCO captions file"}));
}

TEST(CocoCaptions, ManifestRoundTripAndBadLines) {
  test::TempDir tmp("coco_manifest");
  test::write_tiny_coco(tmp.path, 6);
  const auto drawn = eval::draw_coco_captions(tmp.path / "captions_val2014.json", 5, 1);
  eval::write_caption_manifest(tmp.path / "captions.jsonl", drawn);
  const auto back = eval::read_caption_manifest(tmp.path / "captions.jsonl");
  ASSERT_EQ(back.size(), drawn.size());
  for (std::size_t i = 0; i < back.size(); ++i) {
    EXPECT_EQ(back[i].image_id, drawn[i].image_id);
    EXPECT_EQ(back[i].file_name, drawn[i].file_name);
    EXPECT_EQ(back[i].caption, drawn[i].caption);
  }
  auto text = test::read_bytes(tmp.path / "captions.jsonl");
  test::write_bytes(tmp.path / "cut.jsonl", text.substr(0, text.size() - 10));
  EXPECT_TRUE(test::throws_with([&] { eval::read_caption_manifest(tmp.path / "cut.jsonl"); },
                                (tmp.path / "cut.jsonl").string() + ":5:", {}));
}

}  // namespace
}  // namespace microdit

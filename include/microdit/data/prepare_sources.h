// The inputs of microdit-prepare and how the work is cut into parts. An input is
//   a folder    images (.jpg .jpeg .png .webp .bmp), each captioned by the .txt file of the same
//               stem beside it, searched recursively; .tar files in it are WebDataset shards
//   a .csv      a header row; an image column (image, image_path, file_name, filename, path) and
//               a caption column (caption, text, prompt), or the ones named in the options;
//               relative image paths are relative to the file's folder
//   a .jsonl    one object per line with the same keys
//   a .tar      a WebDataset shard: samples grouped by key, the image by its extension, the
//               caption from the .txt member or the "caption" of the .json member
// Parts are numbered in input order: each tar is one part, list entries are grouped
// `entries_per_part` at a time. A part is the unit of resumption and of the split between
// processes, so the same inputs always give the same parts.
#pragma once
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace microdit::data {

struct ListEntry {
  std::filesystem::path image;
  std::string caption;
};

struct PreparePart {
  int64_t index = 0;
  std::filesystem::path tar;      // a WebDataset shard, or empty
  std::vector<ListEntry> entries;  // when tar is empty
  std::string describe() const;   // for logs: the tar path, or the first and last image
};

struct SourceOptions {
  int64_t entries_per_part = 4096;
  std::string image_column;    // empty: the first known name present
  std::string caption_column;  // likewise
};

// Throws std::runtime_error naming the input when it does not exist, has an unknown type, or a
// list file lacks the needed columns or has a malformed line (with its line number).
std::vector<PreparePart> plan_parts(const std::vector<std::filesystem::path>& inputs,
                                    const SourceOptions& options = {});

// One image-caption pair as stored. `error` is set (and the rest may be empty) when the pair
// cannot be read: a missing image or caption file; the caller counts and logs it.
struct RawSample {
  std::string name;  // image path, or "<tar>:<key>"
  std::string image_bytes;
  std::string caption;
  std::string error;
};

// Calls `consume` for every sample of `part`, in order. Errors that make the rest of the part
// unreadable (a truncated tar) propagate as std::runtime_error.
void for_each_raw_sample(const PreparePart& part, const std::function<void(RawSample&&)>& consume);

// Image file extensions the inputs recognise (lowercase, without the dot).
bool is_image_extension(const std::string& extension);
// A path whose extension, in any case, is one of those.
bool is_image_file(const std::filesystem::path& path);

}  // namespace microdit::data

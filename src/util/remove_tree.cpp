#include "microdit/util/remove_tree.h"

#include <ftw.h>

#include <cstdio>

namespace microdit::util {

void remove_tree(const std::filesystem::path& path) {
  auto remove_one = [](const char* name, const struct stat*, int, struct FTW*) {
    return std::remove(name);
  };
  ::nftw(path.c_str(), remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

}  // namespace microdit::util

// write_file_atomically: temporary file + fsync + rename + directory fsync (POSIX).
#include "microdit/io/atomic_file.h"

#include <c10/util/StringUtil.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>

namespace microdit::io {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail_errno(const fs::path& path, std::string_view what) {
  throw std::runtime_error(c10::str(path.string(), ": ", what, ": ", std::strerror(errno)));
}

// fsync needs a descriptor; any open descriptor of the file flushes it (Linux, POSIX.1-2008).
void fsync_path(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) fail_errno(path, "cannot open for fsync");
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  errno = saved;
  if (rc != 0) fail_errno(path, "fsync failed");
}

void write_temporary(const fs::path& temp, const std::function<void(std::ostream&)>& write) {
  std::ofstream out(temp, std::ios::binary | std::ios::trunc);
  if (!out) fail_errno(temp, "cannot create temporary file");
  write(out);
  out.flush();
  if (!out) fail_errno(temp, "write failed");
  out.close();
  if (!out) fail_errno(temp, "close failed");
  fsync_path(temp, O_RDONLY);
}

}  // namespace

void write_file_atomically(const fs::path& target,
                           const std::function<void(std::ostream&)>& write) {
  fs::path temp = target;
  temp += c10::str(".tmp.", ::getpid());
  try {
    write_temporary(temp, write);
    if (::rename(temp.c_str(), target.c_str()) != 0) {
      fail_errno(target, c10::str("cannot rename ", temp.filename().string(), " over it"));
    }
  } catch (...) {
    std::error_code ignored;
    fs::remove(temp, ignored);
    throw;
  }
  // The rename is only durable once the directory entry is on disk.
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  fsync_path(dir, O_RDONLY | O_DIRECTORY);
}

}  // namespace microdit::io

#include "host/io/input_file.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "engine/error.hpp"

namespace ebm {

void require_regular_file(const std::string& path, std::string_view what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) user_fail(path, ": no such file");
    user_fail(path, ": cannot open (", std::strerror(errno), ")");
  }
  if (S_ISREG(st.st_mode)) return;
  if (S_ISDIR(st.st_mode)) user_fail(path, ": is a directory, expected ", what);
  const char* kind = S_ISFIFO(st.st_mode)                          ? "a pipe"
                     : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                     : S_ISSOCK(st.st_mode)                         ? "a socket"
                                                                    : "not a file";
  user_fail(path, ": is ", kind, ", expected ", what, " (a regular file: copy the stream to a file and give that)");
}

std::string read_text_file(const std::string& path, std::string_view what, size_t max_bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) user_fail(path, ": is a directory, expected ", what);
  std::ifstream in(path, std::ios::binary);
  if (!in) user_fail(path, ": cannot open ", what, " (", std::strerror(errno), ")");
  std::string text;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, size_t(in.gcount()));
    if (text.size() > max_bytes)
      user_fail(path, ": longer than ", max_bytes >> 20, " MiB, too long for ", what);
  }
  if (in.bad()) user_fail(path, ": cannot read ", what, " (", std::strerror(errno), ")");
  return text;
}

}  // namespace ebm

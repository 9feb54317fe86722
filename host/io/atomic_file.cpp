#include "host/io/atomic_file.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "engine/error.hpp"
#include "host/io/output_files.hpp"

namespace ebm {

void write_file_atomic(const std::string& path, const std::function<void(std::ofstream&)>& write) {
  if (const std::string why = output_file_problem(path); !why.empty()) user_fail("cannot write ", path, ": ", why);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) user_fail("cannot write ", path, ": ", std::strerror(errno));
    write(f);
    f.close();
    if (!f) {
      std::filesystem::remove(tmp);
      user_fail("cannot write ", path, ": write failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    user_fail("cannot write ", path, ": ", ec.message());
  }
}

}  // namespace ebm

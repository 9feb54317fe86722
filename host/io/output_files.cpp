#include "host/io/output_files.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "engine/error.hpp"

namespace fs = std::filesystem;

namespace ebm {

std::string lower_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext;
}

std::string output_file_problem(const std::string& path) {
  if (path.empty()) return "the path is empty";
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (fs::is_directory(st)) return "is a directory";
  if (path.back() == '/') return "names a folder (ends in '/'), not a file";
  if (fs::exists(st) && !fs::is_regular_file(st)) return "exists and is not a regular file (it would be replaced)";
  const fs::path parent = fs::path(path).parent_path();
  const fs::path folder = parent.empty() ? fs::path(".") : parent;
  const fs::file_status pst = fs::status(folder, ec);
  if (!fs::exists(pst)) return "its folder " + folder.string() + " does not exist";
  if (!fs::is_directory(pst)) return folder.string() + " is not a folder";
  // The writers create path.tmp next to it and rename it over the path: the folder must be writable.
  if (::access(folder.c_str(), W_OK | X_OK) != 0) return "its folder " + folder.string() + " is not writable (" + std::strerror(errno) + ")";
  return "";
}

namespace {

// One name per file whatever the spelling ("./a.png", "a.png", "d/../a.png"), links resolved where they exist.
fs::path identity(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  return ec ? fs::absolute(path).lexically_normal() : p;
}

std::string extension_list(const std::vector<std::string>& exts) {
  std::string s;
  for (size_t i = 0; i < exts.size(); ++i) s += (i == 0 ? "" : i + 1 == exts.size() ? " or " : ", ") + exts[i];
  return s;
}

}  // namespace

void check_output_files(const std::vector<OutputFile>& outputs, const std::vector<InputFile>& inputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const OutputFile& o = outputs[i];
    if (const std::string why = output_file_problem(o.path); !why.empty()) user_fail(o.flag, " ", o.path, ": ", why);
    if (!o.extensions.empty() &&
        std::find(o.extensions.begin(), o.extensions.end(), lower_extension(o.path)) == o.extensions.end())
      user_fail(o.flag, " ", o.path, ": writes ", extension_list(o.extensions), " files, not ",
                lower_extension(o.path).empty() ? "a name without an extension" : "a '",
                fs::path(o.path).extension().string(), lower_extension(o.path).empty() ? "" : "' file");
    for (size_t j = 0; j < i; ++j)
      if (identity(outputs[j].path) == identity(o.path))
        user_fail(outputs[j].flag, " and ", o.flag, " name the same file ", o.path, " (the second would replace the first)");
    for (const InputFile& in : inputs)
      if (!in.path.empty() && identity(in.path) == identity(o.path))
        user_fail(o.flag, " ", o.path, " is the ", in.flag, " file: writing it would replace the input");
  }
}

}  // namespace ebm

// Files a tool writes, checked before it does any work: a bad later argument (a directory, a missing
// folder, a wrong extension, two flags naming one file) must not be found after an earlier output has
// already replaced the user's file.
#pragma once
#include <string>
#include <vector>

namespace ebm {

struct OutputFile {
  std::string flag;                     // "--out": names the argument in messages
  std::string path;
  std::vector<std::string> extensions;  // allowed, lower case with the dot (".png"); empty = any
};

struct InputFile {
  std::string flag;  // "--data"
  std::string path;
};

// All outputs at once, before anything is read or written: each path is not a directory, its folder
// exists and is writable, a file already there is a regular file (it will be replaced), its extension is
// allowed, no two outputs are the same file and no output is one of `inputs`. UserError naming the flag
// and the path, e.g. "--npy out/s.npy: its folder out does not exist".
void check_output_files(const std::vector<OutputFile>& outputs, const std::vector<InputFile>& inputs = {});

// What every writer checks just before it writes `path` (replacing it with a rename): "" when it can,
// else why not ("is a directory", "its folder x does not exist", ...).
std::string output_file_problem(const std::string& path);

// The file name's extension in lower case, with the dot: "Samples.PNG" -> ".png"; "" when it has none.
std::string lower_extension(const std::string& path);

}  // namespace ebm

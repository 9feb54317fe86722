// Writes `path` so that readers never see half a file: `path.tmp` first, then one rename.
#pragma once
#include <fstream>
#include <functional>
#include <string>

namespace ebm {

// `write` fills the stream; UserError naming `path` when it cannot be written (a directory there, no such
// folder, ...: output_file_problem), and no .tmp is left.
void write_file_atomic(const std::string& path, const std::function<void(std::ofstream&)>& write);

}  // namespace ebm

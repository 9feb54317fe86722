// Files the tools read whole: images (IDX, .npy, PNG), checkpoints (safetensors, config.json) and configs.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace ebm {

// Throws UserError, in one line naming the path, unless `path` is a regular file (a symbolic link to one is):
//   "PATH: no such file", "PATH: is a directory, expected WHAT",
//   "PATH: is a pipe, expected WHAT (a regular file: copy the stream to a file and give that)" (likewise a device
//   or a socket).
// A pipe cannot be read twice (the image readers look at a file's first bytes to tell its format, then read it
// all), opening a FIFO that has no writer waits forever, and a device such as /dev/zero never ends. Checked with
// stat() before the file is opened, so a FIFO is refused without waiting. `what` names the expected content:
// "a .npy file", "an IDX file".
void require_regular_file(const std::string& path, std::string_view what);

// The whole text of `path`, which may be a pipe or /dev/stdin (a config piped in), refused in one line when
// it holds more than `max_bytes`: "PATH: longer than 16 MiB, too long for WHAT" (/dev/zero given as a config
// would otherwise be read until memory runs out). A directory or a file that cannot be opened or read is a
// UserError naming it.
std::string read_text_file(const std::string& path, std::string_view what, size_t max_bytes);

}  // namespace ebm

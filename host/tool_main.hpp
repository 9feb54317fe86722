// main() of a command-line tool: flags that do not parse exit 2, failures exit 1, each with one line
// "<tool>: <message>" on stderr; --help prints the usage and exits 0.
#pragma once
#include <cstdio>
#include <exception>
#include <iostream>
#include <utility>

namespace ebm {

// parse(argc, argv, help) -> Flags (throws on bad flags); run(flags) -> exit code (throws on failure).
template <class Parse, class Run>
int tool_main(const char* name, const char* usage, int argc, char** argv, Parse parse, Run run) {
  decltype(parse(argc, argv, std::declval<bool&>())) flags;
  try {
    bool help = false;
    flags = parse(argc, argv, help);
    if (help) {
      std::cout << usage;
      return 0;
    }
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return 2;
  }
  try {
    return run(flags);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::cerr << name << ": " << e.what() << "\n";
    return 1;
  }
}

}  // namespace ebm

// Output files checked before a tool does any work: each problem named with the flag and the path, and the
// writers themselves refusing a directory where their file should go.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "host/io/atomic_file.hpp"
#include "host/io/output_files.hpp"
#include "tests/test_support.hpp"

using namespace ebm;
namespace fs = std::filesystem;
using test::expect_user_error;

TEST(OutputFiles, GoodOutputsPass) {
  test::TempDir dir;
  test::spit(dir / "old.png", "an earlier grid");  // an existing file is replaced, not refused
  check_output_files({{"--out", dir / "old.png", {".png"}},
                      {"--npy", dir / "S.NPY", {".npy"}},  // extensions in any case
                      {"--log", dir / "anything.txt", {}}},
                     {{"--init", dir / "in.npy"}, {"--ood", ""}});
  EXPECT_EQ(output_file_problem(dir / "new.csv"), "");
  EXPECT_EQ(lower_extension("a/b/Samples.PNG"), ".png");
  EXPECT_EQ(lower_extension("noext"), "");
}

TEST(OutputFiles, EachProblemNamesTheFlagAndThePath) {
  test::TempDir dir;
  fs::create_directories(dir / "sub");
  test::spit(dir / "file", "x");
  const std::string d = dir.path.string();
  struct Case {
    OutputFile out;
    std::string want;
  } cases[] = {
      {{"--out", dir / "sub", {}}, "--out " + (dir / "sub") + ": is a directory"},
      {{"--out", dir / "sub.png", {".png"}}, ""},  // placeholder replaced below (a directory named .png)
      {{"--npy", dir / "missing/s.npy", {".npy"}}, "--npy " + (dir / "missing/s.npy") + ": its folder " + (dir / "missing") + " does not exist"},
      {{"--npy", dir / "file/s.npy", {".npy"}}, "--npy " + (dir / "file/s.npy") + ": " + (dir / "file") + " is not a folder"},
      {{"--out", dir / "grid.jpg", {".png"}}, "--out " + (dir / "grid.jpg") + ": writes .png files, not a '.jpg' file"},
      {{"--out", dir / "e", {".npy", ".csv"}}, "--out " + (dir / "e") + ": writes .npy or .csv files, not a name without an extension"},
      {{"--out", d + "/new/", {}}, "--out " + d + "/new/: names a folder (ends in '/'), not a file"},
  };
  fs::create_directories(dir / "sub.png");
  cases[1].want = "--out " + (dir / "sub.png") + ": is a directory";
  for (const auto& c : cases) {
    SCOPED_TRACE(c.want);
    expect_user_error([&] { check_output_files({c.out}); }, {c.want});
  }
  EXPECT_EQ(output_file_problem(""), "the path is empty");
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  expect_user_error([&] { check_output_files({{"--out", dir / "fifo", {}}}); },
                    {"--out " + (dir / "fifo") + ": exists and is not a regular file"});
}

TEST(OutputFiles, TwoFlagsNamingOneFileOrAnInputAreRefused) {
  test::TempDir dir;
  fs::create_directories(dir / "sub");
  const std::string a = dir / "a.png", a_again = (dir.path / "sub" / ".." / "." / "a.png").string();
  expect_user_error([&] { check_output_files({{"--out", a, {".png"}}, {"--trajectory", a_again, {".png"}}}); },
                    {"--out and --trajectory name the same file " + a_again + " (the second would replace the first)"});
  // A link to the file is the same file.
  test::spit(a, "x");
  fs::create_symlink(a, dir / "link.png");
  expect_user_error([&] { check_output_files({{"--out", a, {}}, {"--hist", dir / "link.png", {}}}); }, {"name the same file"});
  expect_user_error([&] { check_output_files({{"--npy", dir / "x.npy", {".npy"}}}, {{"--init", dir / "x.npy"}}); },
                    {"--npy " + (dir / "x.npy") + " is the --init file: writing it would replace the input"});
}

TEST(OutputFiles, UnwritableFolderIsRefused) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: every folder is writable";
  test::TempDir dir;
  fs::create_directories(dir / "ro");
  fs::permissions(dir / "ro", fs::perms::owner_read | fs::perms::owner_exec);
  expect_user_error([&] { check_output_files({{"--out", dir / "ro/a.png", {".png"}}}); },
                    {"--out " + (dir / "ro/a.png") + ": its folder " + (dir / "ro") + " is not writable"});
  fs::permissions(dir / "ro", fs::perms::owner_all);
}

TEST(OutputFiles, AtomicWriterRefusesADirectoryAndLeavesNoTmp) {
  test::TempDir dir;
  fs::create_directories(dir / "out.bin");
  expect_user_error([&] { write_file_atomic(dir / "out.bin", [](std::ofstream& f) { f << "x"; }); },
                    {"cannot write " + (dir / "out.bin") + ": is a directory"});
  EXPECT_FALSE(fs::exists(dir / "out.bin.tmp"));
  write_file_atomic(dir / "ok.bin", [](std::ofstream& f) { f << "bytes"; });
  EXPECT_EQ(test::slurp(dir / "ok.bin"), "bytes");
}

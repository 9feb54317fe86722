#include "host/train/run_folder.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "engine/error.hpp"
#include "host/train/memory_plan.hpp"

namespace fs = std::filesystem;

namespace ebm {
namespace {

// A run of decimal digits (at most 18: it fits an int64) as a number; -1 for anything else.
int64_t decimal(std::string_view s) {
  if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(std::string(s));
}

// N for a folder named epoch_<N>; -1 for any other name.
int64_t epoch_number(std::string_view name) { return name.starts_with("epoch_") ? decimal(name.substr(6)) : -1; }

// Checkpoint folders a killed run left half-written: <name>.tmp.<pid> (save_checkpoint's staging folder)
// of a process that no longer runs, and <name>.old (the fallback swap's). Returns what it removed.
std::vector<std::string> remove_stale_temporaries(const fs::path& dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory(ec)) continue;
    const size_t tmp = name.find(".tmp."), old = name.size() >= 4 ? name.size() - 4 : std::string::npos;
    if (tmp != std::string::npos && is_checkpoint_name(std::string_view(name).substr(0, tmp))) {
      const int64_t pid = decimal(std::string_view(name).substr(tmp + 5));
      if (pid < 0 || pid == int64_t(getpid()) || kill(pid_t(pid), 0) == 0 || errno != ESRCH) continue;  // still writing
    } else if (old != std::string::npos && name.compare(old, 4, ".old") == 0 &&
               is_checkpoint_name(std::string_view(name).substr(0, old))) {
      if (!fs::exists(dir / name.substr(0, old), ec)) continue;  // the only copy left of a checkpoint moved aside
    } else {
      continue;
    }
    fs::remove_all(e.path(), ec);
    if (!ec) removed.push_back(name);
  }
  return removed;
}

double folder_bytes(const fs::path& dir) {
  double total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_regular_file(ec)) total += double(it->file_size(ec));
  return total;
}

}  // namespace

bool is_checkpoint_name(std::string_view name) { return name == "last" || epoch_number(name) >= 0; }

std::vector<std::pair<int64_t, fs::path>> epoch_checkpoints(const fs::path& dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const int64_t n = epoch_number(e.path().filename().string());
    if (n >= 0 && e.is_directory(ec)) found.emplace_back(n, e.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::string run_contents(const fs::path& dir) {
  std::error_code ec;
  std::vector<std::string> held;
  for (const char* name : {"last", "last.old"})
    if (fs::is_directory(dir / name, ec)) held.push_back(std::string(name) + "/");
  for (const auto& [n, path] : epoch_checkpoints(dir)) held.push_back(path.filename().string() + "/");
  // An empty metrics.jsonl is a run that never logged a step (made, then dropped or killed, before its first
  // record): no history to keep, so a fresh run may take the folder over.
  if (fs::exists(dir / "metrics.jsonl", ec) && fs::file_size(dir / "metrics.jsonl", ec) > 0) held.push_back("metrics.jsonl");
  std::string s;
  for (size_t i = 0; i < held.size() && i < 4; ++i) s += (i ? ", " : "") + held[i];
  if (held.size() > 4) s += " and " + std::to_string(held.size() - 4) + " more";
  return s;
}

void check_output_dir(const fs::path& dir) {
  std::error_code ec;
  const std::string name = "output_dir \"" + dir.string() + "\"";
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) user_fail(name, ": exists and is not a directory");
    if (access(dir.c_str(), W_OK | X_OK) != 0) user_fail(name, ": not writable (", std::strerror(errno), ")");
    return;
  }
  if (fs::is_symlink(fs::symlink_status(dir, ec)))  // a link to nothing: the folder cannot be made in its place
    user_fail(name, ": is a symbolic link to ", fs::read_symlink(dir, ec).string(),
              ", which does not exist; create that folder, or give another output_dir");
  fs::path up = fs::absolute(dir, ec).parent_path();
  while (!up.empty() && !fs::exists(up, ec) && up != up.root_path()) up = up.parent_path();
  if (!fs::is_directory(up, ec)) user_fail(name, ": cannot create it: ", up.string(), " is not a directory");
  if (access(up.c_str(), W_OK | X_OK) != 0)
    user_fail(name, ": cannot create it: ", up.string(), " is not writable (", std::strerror(errno), ")");
}

void RunFolder::check_role(const std::optional<std::string>& resume) const {
  // Another run's lock, tried and let go at once (a flock is per open file: a Trainer of this process counts too)
  if (const int fd = ::open((dir_ / ".lock").c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
    const bool held = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    ::close(fd);
    if (held) fail_in_use();
  }
  std::error_code ec;
  const std::string name = "output_dir \"" + dir_.string() + "\"";
  for (const char* file : {"model.safetensors", "train_state.safetensors"})
    if (fs::exists(dir_ / file, ec))
      user_fail(name, " is a checkpoint (it holds ", file, "), not a run folder; give its run folder (",
                fs::weakly_canonical(dir_, ec).parent_path().string(), ") or a new one");
  const fs::path out = fs::weakly_canonical(dir_, ec);
  if (resume) {
    const fs::path ckpt = fs::weakly_canonical(*resume, ec);
    const auto [c, o] = std::mismatch(ckpt.begin(), ckpt.end(), out.begin(), out.end());
    if (c == ckpt.end())
      user_fail(name, " is inside the checkpoint being resumed (", *resume, "); write the run to its run folder (",
                ckpt.parent_path().string(), ") or a new one");
  }
  const std::string held = run_contents(dir_);
  if (held.empty()) return;
  const std::string elsewhere = advice_.set("output_dir", advice_.python ? "\"DIR\"" : "DIR");
  if (!resume) {
    if (!fs::exists(dir_ / "last", ec) && fs::exists(dir_ / "last.old", ec))
      user_fail(name, " already holds a run whose last checkpoint a run killed while saving moved aside: rename ",
                (dir_ / "last.old").string(), " to ", (dir_ / "last").string(), " and continue it with ",
                advice_.resume((dir_ / "last").string()), ", or start a new run elsewhere with ", elsewhere);
    const auto epochs = epoch_checkpoints(dir_);
    if (!fs::exists(dir_ / "last", ec) && !epochs.empty())
      user_fail(name, " already holds a run (", held, "); continue it with ", advice_.resume(epochs.back().second.string()),
                ", or start a new one elsewhere with ", elsewhere);
    if (!fs::exists(dir_ / "last", ec))
      user_fail(name, " already holds a run that wrote no checkpoint (", held, "); remove the folder to start again, ",
                "or start a new run elsewhere with ", elsewhere);
    user_fail(name, " already holds a run (", held, "); continue it with ", advice_.resume((dir_ / "last").string()),
              ", or start a new one elsewhere with ", elsewhere);
  }
  if (fs::weakly_canonical(*resume, ec).parent_path() != out)
    user_fail(name, " already holds another run (", held, "); resume ", *resume,
              " into its own run folder or a new one (", elsewhere, ")");
}

void RunFolder::check_save_target(const std::string& dir) const {
  if (dir.empty()) user_fail("save: the checkpoint path is empty; give a new folder");
  std::error_code ec;
  const std::string name = "save: \"" + dir + "\"";
  const fs::path target = fs::weakly_canonical(fs::absolute(dir, ec), ec), run = fs::weakly_canonical(dir_, ec);
  if (std::mismatch(target.begin(), target.end(), run.begin(), run.end()).first == target.end())
    user_fail(name, " is the run folder or holds it (", dir_.string(), "); give a folder of its own");
  if (target.parent_path() == run && is_checkpoint_name(target.filename().string()))
    user_fail(name, ": the run writes its own ", target.filename().string(), "/ there; give another name");
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) user_fail(name, " exists and is not a folder; give a new folder (nothing is overwritten)");
    if (!fs::is_empty(dir, ec)) user_fail(name, " already holds files; give a new or empty folder (nothing is overwritten)");
  }
  check_output_dir(dir);
}

std::vector<std::string> RunFolder::prepare() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) user_fail("output_dir \"", dir_.string(), "\": cannot create it (", ec.message(), ")");
  lock();
  return remove_stale_temporaries(dir_);
}

void RunFolder::lock() {
  const fs::path file = dir_ / ".lock";
  lock_fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) user_fail("output_dir \"", dir_.string(), "\": cannot create ", file.string(), " (", std::strerror(errno), ")");
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    unlock();
    fail_in_use();
  }
}

void RunFolder::fail_in_use() const {
  user_fail("output_dir \"", dir_.string(), "\" is in use by another training run (one holds ", (dir_ / ".lock").string(),
            "); let it end, or write this run elsewhere with ", advice_.set("output_dir", advice_.python ? "\"DIR\"" : "DIR"));
}

void RunFolder::unlock() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
  lock_fd_ = -1;
}

void RunFolder::prune(int64_t newest, int keep) const {
  if (newest <= 0 || keep <= 0) return;
  auto epochs = epoch_checkpoints(dir_);
  std::erase_if(epochs, [&](const auto& e) { return e.first > newest; });
  for (size_t i = 0; i + size_t(keep) < epochs.size(); ++i) {
    std::error_code ec;
    fs::remove_all(epochs[i].second, ec);
  }
}

std::string RunFolder::size_report(int keep) const {
  const auto epochs = epoch_checkpoints(dir_);
  return "run folder " + dir_.string() + ": " + human_bytes(folder_bytes(dir_)) + " (" +
         (fs::exists(dir_ / "last") ? "last/ and " : "") + std::to_string(epochs.size()) + " epoch checkpoint" +
         (epochs.size() == 1 ? "" : "s") + "; train.keep_checkpoints = " + std::to_string(keep) +
         (keep == 0 ? ", all kept" : "") + ")";
}

}  // namespace ebm

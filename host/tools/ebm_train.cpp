// ebm_train CONFIG [--set key=value]... [--resume DIR] [--backend auto|cpu|cuda] [--profile-steps A:B]
#include <csignal>
#include <iostream>

#include "engine/error.hpp"
#include "host/cli.hpp"
#include "host/config.hpp"
#include "host/profile_range.hpp"
#include "host/training_run.hpp"

namespace {

std::atomic<int> g_stop{0};
extern "C" void on_signal(int) { g_stop.store(1); }

const char* kUsage =
    "usage: ebm_train CONFIG [--set key=value]... [--resume DIR] [--backend auto|cpu|cuda] [--profile-steps A:B]\n"
    "  CONFIG           JSON config (configs/mnist.json is the seed's run)\n"
    "  --set k=v        override any config key, e.g. --set train.epochs=2 --set model.channels=[8,16]\n"
    "  --resume DIR     continue from a checkpoint directory (e.g. runs/mnist/last), bit for bit\n"
    "  --backend B      auto (CUDA when a device is present), cpu or cuda; overrides the config's\n"
    "  --profile-steps A:B  run steps A..B-1 inside cudaProfilerStart/Stop (nsys --capture-range=cudaProfilerApi)\n"
    "SIGINT/SIGTERM finish the current step, write a checkpoint and exit 0.\n";

int run(int argc, char** argv) {
  ebm::Args args(argc, argv, {"--set", "--resume", "--backend", "--profile-steps"}, {"--help"});
  if (args.has("--help")) {
    std::cout << kUsage;
    return 0;
  }
  if (args.positional().size() != 1) {
    std::cerr << kUsage;
    return 2;
  }
  std::vector<std::string> sets = args.all("--set");
  if (args.has("--backend")) sets.push_back("backend=" + args.str("--backend", "auto"));
  ebm::TrainRunOptions o;
  o.config = ebm::load_config(args.positional()[0], sets);
  o.resume = args.str("--resume", "");
  if (args.has("--profile-steps")) {
    const ebm::StepRange r = ebm::parse_step_range(args.str("--profile-steps", ""));
    o.profile_begin = int(r.begin);
    o.profile_end = int(r.end);
  }
  o.stop = &g_stop;
  std::cout << "config " << args.positional()[0] << (sets.empty() ? "" : " with --set overrides") << " (resolved):\n";
  const nlohmann::json resolved = ebm::config_to_json(o.config);
  for (const auto& [key, value] : resolved.items()) std::cout << "  " << key << ": " << value.dump() << "\n";
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  return ebm::run_training(o);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const ebm::UserError& e) {
    std::cerr << "ebm_train: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "ebm_train: internal error: " << e.what() << "\n";
    return 1;
  }
}
